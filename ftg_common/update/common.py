"""What every update loop shares: the checkpointed side of a backend, step statistics, Adam resumed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from ftg_common.algos.adam import FlatAdam

__all__ = ["CheckpointedBackend", "StepSums", "resume_flat_adam"]


class _Counters(Protocol):
    @property
    def optimizer_step(self) -> int: ...


class _OptimizedVersion(Protocol):
    """A stored version (PPO or DQN) as far as its optimizer goes."""

    @property
    def optimizer(self) -> dict[str, np.ndarray]: ...

    @property
    def state(self) -> _Counters: ...


def resume_flat_adam(
    version: _OptimizedVersion, size: int, *, adam_eps: float, max_grad_norm: float
) -> FlatAdam:
    """The numpy Adam of ``size`` parameters where ``version`` left it: its moments and step count."""
    return FlatAdam(
        size, version.optimizer, version.state.optimizer_step, eps=adam_eps, max_grad_norm=max_grad_norm
    )


class CheckpointedBackend(Protocol):
    """The part of a backend (networks + optimizer) that a version's checkpoint stores."""

    def weights(self) -> dict[str, np.ndarray]:
        """The trained parameters (safetensors names)."""
        ...

    def optimizer_tensors(self) -> dict[str, np.ndarray]:
        """The optimizer state as stored in the checkpoint."""
        ...

    @property
    def optimizer_step(self) -> int:
        """Optimizer steps taken, where the optimizer tensors do not carry the count themselves (else 0)."""
        ...


@dataclass
class StepSums:
    """Sums of the per-step statistics named by ``KEYS`` (each loop's subclass names its own)."""

    KEYS: ClassVar[tuple[str, ...]] = ()

    sums: dict[str, float] = field(init=False)
    n_updates: int = 0

    def __post_init__(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0.0)

    def add(self, stats: dict[str, float]) -> None:
        """Count one optimizer step with its statistics."""
        for k in self.KEYS:
            self.sums[k] += float(stats[k])
        self.n_updates += 1

    def mean(self, key: str) -> float | None:
        """Mean of ``key`` over the steps taken (None when none was taken)."""
        return self.sums[key] / self.n_updates if self.n_updates else None
