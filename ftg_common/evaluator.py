"""The policy-evaluator's steps around the episode loop: its envs, its seeds, and its summary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np

from ftg_common.algos.stats import iqm
from ftg_common.config import HParams
from ftg_common.envs.factory import make_env
from ftg_common.envs.seeding import EVAL, derive_seed
from ftg_common.errors import BadRequest
from ftg_common.schemas import EvalResult
from ftg_common.warm import WarmPool

__all__ = ["eval_envs", "eval_record", "eval_seeds", "eval_version", "summarize"]


def _build(env_id: str, kwargs_json: str, count: int) -> list[gym.Env]:
    return [make_env(env_id, json.loads(kwargs_json)) for _ in range(count)]


_ENVS: WarmPool[list[gym.Env]] = WarmPool(_build, max_idle=8)


@contextmanager
def eval_envs(hp: HParams, count: int) -> Iterator[list[gym.Env]]:
    """``count`` envs of the run's kind for the length of the block (each episode resets its env)."""
    with _ENVS.lend(hp.env_id, json.dumps(hp.env_kwargs, sort_keys=True), count) as envs:
        yield envs


def eval_version(iteration: int, version: int | None) -> int:
    """The policy version an evaluation of iteration ``iteration`` runs: the one that iteration produced.

    Iteration i's eval record (``layout.eval_key(run, i)``) is the evaluation of version i + 1 and of
    no other, so the record's key always says which version it holds and a retry rewrites it with the
    same episodes.

    Raises:
        BadRequest: ``version`` is given and is not ``iteration + 1`` (field ``version``).
    """
    if version is not None and version != iteration + 1:
        raise BadRequest(
            f"version {version} is not the version iteration {iteration} produced ({iteration + 1}); "
            f"to evaluate version {version}, send iteration {version - 1}",
            "version",
        )
    return iteration + 1


def eval_seeds(run_seed: int, version: int, episodes: int) -> list[int]:
    """Reset seeds of the evaluation episodes of a policy version: the same episodes on every retry."""
    return [derive_seed(run_seed, EVAL, version, k) for k in range(episodes)]


def summarize(key: str, version: int, returns: np.ndarray, lengths: np.ndarray) -> EvalResult:
    """The evaluator's answer for episode ``returns`` [E] and ``lengths`` [E] (E >= 1)."""
    return EvalResult(
        key=key,
        version=version,
        episodes=int(returns.shape[0]),
        mean_return=float(returns.mean()),
        std_return=float(returns.std()),
        iqm_return=float(iqm(returns)),
        min_return=float(returns.min()),
        max_return=float(returns.max()),
        mean_length=float(lengths.mean()),
    )


def eval_record(result: EvalResult, returns: np.ndarray, lengths: np.ndarray) -> dict[str, Any]:
    """What the evaluator stores: the summary and every episode.

    The call's wall time is left out, so a retried evaluation rewrites identical bytes.
    """
    summary = result.model_dump(mode="json", exclude={"seconds"})
    return {**summary, "returns": returns.tolist(), "lengths": lengths.tolist()}
