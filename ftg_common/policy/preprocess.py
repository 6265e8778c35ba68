"""What a policy version does to a raw env observation before its network, as evaluation does it.

numpy only. The policy-evaluator takes each observation as the env emits it, as its raw vector
(:func:`~ftg_common.envs.encoding.raw_observation`), then:

1. normalises it with the version's statistics, frozen (only when the run normalises observations):
   ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` in float64, cast to float32
   (:func:`~ftg_common.normalize.normalize_obs`, SB3's ``VecNormalize`` with ``training=False``);
2. encodes it (:class:`~ftg_common.envs.encoding.ObservationEncoding`): one-hot for Discrete,
   MultiDiscrete and Tuple of Discrete observations, unchanged for a Box.

An exported or registered model carries this step, so its user feeds raw observations; its
description (:meth:`ObsPreprocess.metadata`) is recorded with the model, statistics included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ftg_common.normalize import NormalizeSettings, NormStats, normalize_obs

if TYPE_CHECKING:
    from ftg_common.envs.encoding import ObservationEncoding

__all__ = ["ObsPreprocess"]


def _floats(a: np.ndarray) -> list[float]:
    # Python floats print the shortest repr that reads back to the same float64: exact in JSON.
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


@dataclass(frozen=True, eq=False)
class ObsPreprocess:
    """The raw observation -> network input step of one policy version.

    Attributes:
        raw_dim: width of a raw observation vector.
        dim: width of the network input.
        encoding: the one-hot encoding, None when observations are used as they are.
        norm: the version's normalisation statistics, None when the run does not normalise.
        settings: the normalisation options (None with ``norm``).
    """

    raw_dim: int
    dim: int
    encoding: ObservationEncoding | None = None
    norm: NormStats | None = None
    settings: NormalizeSettings | None = None

    @classmethod
    def build(
        cls,
        obs_dim: int,
        encoding: ObservationEncoding | None = None,
        norm: NormStats | None = None,
        settings: NormalizeSettings | None = None,
    ) -> ObsPreprocess:
        """The step of a network with input width ``obs_dim`` (the spec's ``obs_dim``).

        Raises:
            ValueError: the encoding's or the statistics' width does not fit ``obs_dim``.
        """
        raw_dim = obs_dim if encoding is None or encoding.identity else encoding.raw_dim
        if encoding is not None and encoding.dim != obs_dim:
            raise ValueError(f"the encoding is {encoding.dim} wide, the network takes {obs_dim}")
        if norm is not None and norm.obs_rms.shape != (raw_dim,):
            raise ValueError(f"observation statistics of shape {norm.obs_rms.shape} do not fit [{raw_dim}]")
        enc = None if encoding is None or encoding.identity else encoding
        return cls(raw_dim, obs_dim, enc, norm, settings if norm is not None else None)

    @property
    def normalizes(self) -> bool:
        """True when observations are normalised (statistics present, ``norm_obs`` on), as evaluation does."""
        return self.norm is not None and self.settings is not None and self.settings.norm_obs

    @property
    def identity(self) -> bool:
        """True when the network takes the raw observation as it is (cast to float32)."""
        return self.encoding is None and not self.normalizes

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Raw observation vectors [B, raw_dim] (any trailing shape is flattened) -> input [B, dim] float32.

        Raises:
            ValueError: a wrong width, or an index outside its Discrete range (one-hot).
        """
        x = np.asarray(raw)
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.raw_dim:
            raise ValueError(f"raw observations must be [B, {self.raw_dim}], got shape {np.shape(raw)}")
        x = x.astype(np.float32)
        if self.normalizes:
            assert self.norm is not None and self.settings is not None
            x = normalize_obs(x, self.norm.obs_rms, self.settings.clip_obs, self.settings.epsilon)
        return x if self.encoding is None else self.encoding.encode(x)

    def std(self) -> np.ndarray:
        """sqrt(var + epsilon) [raw_dim] float64 of a normalising step (what observations are divided by)."""
        if not self.normalizes:
            raise ValueError("this step does not normalise observations")
        assert self.norm is not None and self.settings is not None
        return self.norm.obs_rms.std(self.settings.epsilon)

    def example(self, rows: int = 2) -> np.ndarray:
        """A valid raw input [rows, raw_dim] float32: zeros, or each component's first index (one-hot)."""
        first = np.zeros(self.raw_dim) if self.encoding is None else np.asarray(self.encoding.starts)
        return np.tile(first.astype(np.float32), (rows, 1))

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description: ``raw_dim``, ``dim``, ``encoding`` and ``normalization`` (null if none).

        ``normalization`` holds ``applied`` (observations are normalised: ``norm_obs``), the observation
        statistics ``mean``, ``var`` (per raw component, float64 written exactly) and ``count``,
        ``clip_obs``, ``epsilon``, the discounted-return statistics ``ret_rms`` (used in training only)
        and every option under ``settings``.
        """
        out: dict[str, Any] = {
            "raw_dim": self.raw_dim,
            "dim": self.dim,
            "encoding": None if self.encoding is None else self.encoding.to_dict(),
            "normalization": None,
        }
        if self.norm is not None:
            settings = self.settings or NormalizeSettings()
            obs, ret = self.norm.obs_rms, self.norm.ret_rms
            out["normalization"] = {
                "applied": self.normalizes,
                "formula": "clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs), float64",
                "mean": _floats(obs.mean),
                "var": _floats(obs.var),
                "count": obs.count,
                "clip_obs": settings.clip_obs,
                "epsilon": settings.epsilon,
                "ret_rms": {"mean": float(ret.mean), "var": float(ret.var), "count": ret.count},
                "settings": asdict(settings),
            }
        return out
