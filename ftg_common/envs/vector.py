"""A shard's environments, stepped together, whose state survives between stateless invocations.

A rollout of T steps rarely ends on an episode boundary, so the next iteration's collector must continue
the same episodes. Nothing is pickled: the carry is a set of arrays (safetensors). Classic-control envs
expose their physical state as an array (``unwrapped.state``), which is restored directly; any other env
is restored by resetting with the episode's seed and replaying the episode's actions, which reproduces
it exactly because gymnasium envs are deterministic given the reset seed and the actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from ftg_common.envs.encoding import observation_encoding
from ftg_common.envs.factory import make_env
from ftg_common.envs.seeding import EPISODE, derive_seed
from ftg_common.errors import UnknownEnvError

STATE_CODEC = "state"
REPLAY_CODEC = "replay"


class CarryMismatchError(ValueError):
    """A stored carry that cannot be restored into this shard (unknown codec or wrong shape)."""


@dataclass
class EnvCarry:
    """Arrays describing M in-flight episodes, stored between invocations.

    ``arrays`` holds obs [M, obs_dim], ep_return [M], ep_length [M], ep_index [M] (episodes begun so far
    per env), and ``state`` [M, S] (state codec) or ``actions`` [M, L(, A)] (replay codec).
    """

    codec: str
    arrays: dict[str, np.ndarray]

    def metadata(self) -> dict[str, str]:
        """String metadata stored next to the arrays (the codec that reads them back)."""
        return {"codec": self.codec}

    @classmethod
    def from_stored(cls, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> EnvCarry:
        """Rebuild a carry from stored arrays and metadata; CarryMismatchError for an unknown codec."""
        codec = metadata.get("codec", "")
        if codec not in (STATE_CODEC, REPLAY_CODEC):
            raise CarryMismatchError(f"unknown carry codec {codec!r}")
        return cls(codec, arrays)


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    w: Any = env
    while isinstance(w, gym.Wrapper):
        if isinstance(w, gym.wrappers.TimeLimit):
            return w
        w = w.env
    return None


def _codec_for(env: gym.Env) -> str:
    # Classic-control envs keep their whole dynamic state in ``unwrapped.state``, and their steps draw
    # no randomness, so restoring it continues an episode exactly. The attribute is only set by the
    # first reset, and this runs on envs that were just made: decide by the env's module.
    if type(env.unwrapped).__module__.startswith("gymnasium.envs.classic_control"):
        return STATE_CODEC
    return REPLAY_CODEC


@dataclass
class ShardEnvs:
    """M environments of one shard.

    ``global_offset`` numbers them across shards so that episode seeds (run seed, global env index,
    episode index) do not depend on how the envs are split into shards.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    n_envs: int
    run_seed: int
    global_offset: int
    envs: list[gym.Env] = field(init=False)

    def __post_init__(self) -> None:
        self.envs = [make_env(self.env_id, self.env_kwargs) for _ in range(self.n_envs)]
        self.codec = _codec_for(self.envs[0])
        space = self.envs[0].action_space
        self.box_actions = isinstance(space, gym.spaces.Box)
        self._low = np.asarray(space.low, dtype=np.float32) if isinstance(space, gym.spaces.Box) else None
        self._high = np.asarray(space.high, dtype=np.float32) if isinstance(space, gym.spaces.Box) else None
        # The raw vector's width (a Tuple of Discrete has no shape but one entry per component).
        self.obs_dim = observation_encoding(self.envs[0].observation_space)[1].raw_dim
        self._limits = [_time_limit(e) for e in self.envs]

    def _config_error(self, exc: Exception) -> Exception:
        # With env_kwargs, a type or value error of the env's own code is the config's doing: a 400
        # naming the field, never retried. Without them it is a bug, answered as one.
        if not self.env_kwargs:
            return exc
        return UnknownEnvError(
            f"{self.env_id!r} with env_kwargs {self.env_kwargs} fails: {type(exc).__name__}: {exc}",
            "env_kwargs",
        )

    # --- episode bookkeeping -----------------------------------------------------------------------
    def _episode_seed(self, j: int) -> int:
        return derive_seed(self.run_seed, EPISODE, self.global_offset + j, int(self.ep_index[j]))

    def _reset_env(self, j: int) -> np.ndarray:
        try:
            obs, _ = self.envs[j].reset(seed=self._episode_seed(j))
        except (TypeError, ValueError) as exc:
            raise self._config_error(exc) from exc
        self.ep_return[j] = 0.0
        self.ep_length[j] = 0
        self._history[j] = []
        return np.asarray(obs, dtype=np.float32).reshape(-1)

    def start(self, carry: EnvCarry | None) -> np.ndarray:
        """Begin fresh episodes (``carry is None``) or continue the carried ones; returns obs [M, obs_dim]."""
        m = self.n_envs
        self.ep_return = np.zeros(m, dtype=np.float64)
        self.ep_length = np.zeros(m, dtype=np.int64)
        self.ep_index = np.zeros(m, dtype=np.int64)
        self._history: list[list[Any]] = [[] for _ in range(m)]
        self.obs = np.zeros((m, self.obs_dim), dtype=np.float32)
        if carry is None:
            for j in range(m):
                self.obs[j] = self._reset_env(j)
            return self.obs
        self._restore(carry)
        return self.obs

    def _restore(self, carry: EnvCarry) -> None:
        a = carry.arrays
        if carry.codec != self.codec:
            raise CarryMismatchError(f"carry codec {carry.codec!r} does not match env codec {self.codec!r}")
        if a["obs"].shape != (self.n_envs, self.obs_dim):
            raise CarryMismatchError(
                f"carry holds obs {a['obs'].shape}, expected {(self.n_envs, self.obs_dim)}"
            )
        self.ep_index[:] = a["ep_index"]
        for j, env in enumerate(self.envs):
            self._reset_env(j)
            length = int(a["ep_length"][j])
            if carry.codec == STATE_CODEC:
                # Classic-control envs keep their whole dynamic state in ``unwrapped.state``.
                setattr(env.unwrapped, "state", np.array(a["state"][j], dtype=a["state"].dtype))  # noqa: B010
                limit = self._limits[j]
                if limit is not None:
                    # The wrapper's counter is private; restoring it is what makes truncation resume.
                    setattr(limit, "_elapsed_steps", length)  # noqa: B010
            else:
                for step in range(length):
                    action = a["actions"][j, step]
                    env.step(action if self.box_actions else int(action))
                    self._history[j].append(action)
        self.ep_return[:] = a["ep_return"]
        self.ep_length[:] = a["ep_length"]
        self.obs[:] = a["obs"]

    def carry(self) -> EnvCarry:
        """Snapshot of the in-flight episodes for the next invocation to ``start`` from."""
        arrays: dict[str, np.ndarray] = {
            "obs": self.obs.copy(),
            "ep_return": self.ep_return.copy(),
            "ep_length": self.ep_length.copy(),
            "ep_index": self.ep_index.copy(),
        }
        if self.codec == STATE_CODEC:
            arrays["state"] = np.stack([np.asarray(getattr(e.unwrapped, "state")) for e in self.envs])  # noqa: B009
        else:
            longest = max((len(h) for h in self._history), default=0)
            shape: tuple[int, ...] = (self.n_envs, longest)
            if self.box_actions:
                shape += (int(np.prod(self.envs[0].action_space.shape or ())),)
            actions = np.zeros(shape, dtype=np.float32 if self.box_actions else np.int64)
            for j, hist in enumerate(self._history):
                if hist:
                    actions[j, : len(hist)] = np.asarray(hist)
            arrays["actions"] = actions
        return EnvCarry(self.codec, arrays)

    # --- stepping ----------------------------------------------------------------------------------
    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int]]]:
        """Step every env; envs whose episode ended are reset with their next episode seed.

        Returns (obs [M, obs_dim] after autoreset, rewards [M], terminated [M], truncated [M],
        final_obs [M, obs_dim] (the true last observation where an episode ended, else zeros),
        finished [(return, length)] in env order).
        """
        m = self.n_envs
        rewards = np.zeros(m, dtype=np.float32)
        terminated = np.zeros(m, dtype=bool)
        truncated = np.zeros(m, dtype=bool)
        final_obs = np.zeros((m, self.obs_dim), dtype=np.float32)
        finished: list[tuple[float, int]] = []
        to_env = np.clip(actions, self._low, self._high) if self.box_actions else actions.tolist()
        replay = self.codec == REPLAY_CODEC
        for j, env in enumerate(self.envs):
            try:
                obs, reward, term, trunc, _ = env.step(to_env[j])
            except (TypeError, ValueError) as exc:
                raise self._config_error(exc) from exc
            self.ep_return[j] += reward
            self.ep_length[j] += 1
            rewards[j] = reward
            if replay:
                # What the env stepped (clipped for Box actions): a restore replays exactly this.
                self._history[j].append(to_env[j])
            if term or trunc:
                terminated[j] = term
                # An episode that both terminates and hits the time limit has no future: no bootstrap.
                truncated[j] = trunc and not term
                # The true last observation (the replay buffer's next_obs; PPO bootstraps on truncation).
                final_obs[j] = np.asarray(obs, dtype=np.float32).reshape(-1)
                finished.append((float(self.ep_return[j]), int(self.ep_length[j])))
                self.ep_index[j] += 1
                self.obs[j] = self._reset_env(j)
            else:
                self.obs[j] = np.asarray(obs, dtype=np.float32).reshape(-1)
        return self.obs, rewards, terminated, truncated, final_obs, finished
