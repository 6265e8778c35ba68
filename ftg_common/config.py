"""Training and sweep configuration (validated; a wrong key or value is reported by its field name)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from ftg_common.ids import RUN_ID_PATTERN
from ftg_common.spec_parts import drop_defaults

if TYPE_CHECKING:
    from ftg_common.normalize import NormalizeSettings
    from ftg_common.zoo import ZooEntry


def _layer_widths(v: list[int]) -> list[int]:
    if any(h <= 0 or h > 4096 for h in v):
        raise ValueError("every layer width must be in 1..4096")
    return v


NetArch = Annotated[list[int], AfterValidator(_layer_widths)]
"""Hidden layer widths of a network, each in 1..4096 (PPO's actor and critic, DQN's Q-network)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Iterated(_Strict):
    """What PPO and DQN configs share: ``n_envs`` split over ``shards``, iterations of ``rollout_size``.

    The fields themselves stay on each config (their defaults differ, and so would their order).
    """

    if TYPE_CHECKING:
        n_envs: int
        shards: int
        total_steps: int
        eval_every_steps: int

    # The field holding each env's steps per iteration: n_steps (PPO), train_freq (off-policy).
    _steps_field: ClassVar[str]

    @property
    def rollout_size(self) -> int:
        """Transitions per iteration across all shards (``n_envs`` times each env's steps)."""
        steps: int = getattr(self, self._steps_field)
        return self.n_envs * steps

    def _check_iterations(self, rollout: str, batch_limit: tuple[str, int] | None = None) -> None:
        """Refuse what cannot make whole iterations, and a ``batch_size`` above ``batch_limit``.

        Args:
            rollout: how the errors name one iteration's transitions.
            batch_limit: what bounds ``batch_size``, and its value (None: no bound to check).
        """
        if self.n_envs % self.shards:
            raise ValueError(f"n_envs ({self.n_envs}) must be divisible by shards ({self.shards})")
        if self.total_steps < self.rollout_size:
            raise ValueError(f"total_steps ({self.total_steps}) is less than {rollout} ({self.rollout_size})")
        batch_size: int = getattr(self, "batch_size", 0)
        if batch_limit is not None and batch_size > batch_limit[1]:
            raise ValueError(f"batch_size ({batch_size}) exceeds {batch_limit[0]} ({batch_limit[1]})")

    @property
    def envs_per_shard(self) -> int:
        """Environments each rollout-collector invocation steps."""
        return self.n_envs // self.shards

    @property
    def n_iterations(self) -> int:
        """Iterations needed to reach ``total_steps``."""
        # Like SB3, keep collecting while fewer than total_steps have been taken (so 1e5 steps with
        # 256-step rollouts is 391 iterations, 100,096 steps).
        return -(-self.total_steps // self.rollout_size)

    @property
    def eval_every_iterations(self) -> int:
        """``eval_every_steps`` rounded to whole iterations (at least 1)."""
        return max(1, round(self.eval_every_steps / self.rollout_size))


class NormalizeOptions(_Strict):
    """Stable-Baselines3 ``VecNormalize`` options (names and defaults are SB3's)."""

    norm_obs: bool = True
    norm_reward: bool = True
    clip_obs: float = Field(default=10.0, gt=0)
    clip_reward: float = Field(default=10.0, gt=0)
    gamma: float = Field(default=0.99, gt=0, le=1)
    epsilon: float = Field(default=1e-8, ge=0)

    def settings(self) -> NormalizeSettings:
        """The options as the numpy-only normalisation module takes them."""
        from ftg_common.normalize import NormalizeSettings

        return NormalizeSettings(**self.model_dump())


# PPO fields added after configs were first stored: left out of dumps while at their default, so the
# digest of every config that does not use them stays what it was.
_PPO_OMIT_WHEN_DEFAULT: dict[str, Any] = {
    "normalize": None,
    "use_sde": False,
    "sde_sample_freq": -1,
    "sde_full_std": True,
    "sde_use_expln": False,
}


class PPOConfig(_Iterated):
    """PPO hyperparameters; names and meanings follow Stable-Baselines3."""

    # Excluded from dumps, so the digests of configs stored before DQN existed stay what they were;
    # a dump without ``algo`` still reads back as PPO (see :data:`AlgoConfig`).
    algo: Literal["ppo"] = Field(default="ppo", exclude=True)
    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    total_steps: int = Field(default=100_000, gt=0)
    n_envs: int = Field(default=8, gt=0, le=1024)
    n_steps: int = Field(default=32, gt=0, le=100_000)
    shards: int = Field(default=2, gt=0, le=256, description="rollout-collector invocations per iteration")
    gamma: float = Field(default=0.98, gt=0, le=1)
    gae_lambda: float = Field(default=0.8, ge=0, le=1)
    n_epochs: int = Field(default=20, gt=0)
    batch_size: int = Field(default=256, gt=1, description="minibatch size")
    learning_rate: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "linear"] = "linear"
    clip_range: float = Field(default=0.2, gt=0)
    clip_schedule: Literal["constant", "linear"] = "linear"
    clip_range_vf: float | None = Field(default=None, gt=0)
    ent_coef: float = Field(default=0.0, ge=0)
    vf_coef: float = Field(default=0.5, ge=0)
    max_grad_norm: float = Field(default=0.5, gt=0)
    normalize_advantage: bool = True
    target_kl: float | None = Field(default=None, gt=0)
    adam_eps: float = Field(default=1e-5, gt=0)
    update_backend: Literal["numpy", "torch"] = Field(
        default="numpy", description="numpy: hand-written gradients (fast on CPU); torch: autograd reference"
    )
    net_arch: NetArch = Field(default_factory=lambda: [64, 64], min_length=1, max_length=8)
    activation: Literal["tanh", "relu"] = "tanh"
    ortho_init: bool = True
    log_std_init: float = 0.0
    eval_every_steps: int = Field(default=2048, gt=0)
    eval_episodes: int = Field(default=10, gt=0, le=1000)
    threshold: float | None = 475.0
    normalize: NormalizeOptions | None = Field(
        default=None, description="VecNormalize-style observation/reward normalisation (None: off)"
    )
    use_sde: bool = Field(default=False, description="generalized state-dependent exploration (Box actions)")
    sde_sample_freq: int = Field(default=-1, ge=-1, description="steps between gSDE noise draws (-1: once)")
    sde_full_std: bool = True
    sde_use_expln: bool = False

    @field_validator("normalize", mode="before")
    @classmethod
    def _normalize_flag(cls, v: Any) -> Any:
        # The RL Zoo writes ``normalize: true`` for SB3's defaults and ``false`` for none.
        if v is True:
            return {}
        if v is False:
            return None
        return v

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return drop_defaults(handler(self), _PPO_OMIT_WHEN_DEFAULT)

    @property
    def normalize_settings(self) -> NormalizeSettings | None:
        """The normalisation options, None when off."""
        return None if self.normalize is None else self.normalize.settings()

    _steps_field: ClassVar[str] = "n_steps"  # each env's steps per iteration (see rollout_size)

    @model_validator(mode="after")
    def _consistent(self) -> PPOConfig:
        self._check_iterations("one rollout", ("n_envs * n_steps", self.rollout_size))
        return self


class DQNConfig(_Iterated):
    """DQN hyperparameters; names and meanings follow Stable-Baselines3, defaults the RL Zoo's CartPole-v1.

    One iteration collects ``train_freq`` vectorised steps of ``n_envs`` environments (SB3 counts
    ``train_freq`` in calls to ``env.step``), appends them to the replay buffer and, once more than
    ``learning_starts`` steps were taken, takes ``gradient_steps`` minibatch steps (-1: as many as
    transitions were collected). ``target_update_interval`` counts environment steps as SB3 does: the
    target network moves towards the online one after every ``max(target_update_interval // n_envs, 1)``
    vectorised steps (see :func:`ftg_common.algos.dqn.target_syncs`).
    """

    algo: Literal["dqn"] = "dqn"
    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    total_steps: int = Field(default=50_000, gt=0)
    n_envs: int = Field(default=1, gt=0, le=1024)
    shards: int = Field(default=1, gt=0, le=256, description="rollout-collector invocations per iteration")
    learning_rate: float = Field(default=2.3e-3, gt=0)
    lr_schedule: Literal["constant", "linear"] = "constant"
    buffer_size: int = Field(
        default=100_000, gt=0, le=100_000_000, description="replay capacity, transitions"
    )
    learning_starts: int = Field(default=1000, ge=0)
    batch_size: int = Field(default=64, gt=0, description="minibatch size of a gradient step")
    tau: float = Field(default=1.0, gt=0, le=1, description="polyak coefficient (1: hard copy)")
    gamma: float = Field(default=0.99, gt=0, le=1)
    train_freq: int = Field(default=256, gt=0, le=100_000, description="vectorised env steps per iteration")
    gradient_steps: int = Field(default=128, ge=-1, le=100_000)
    target_update_interval: int = Field(default=10, gt=0, description="environment steps between syncs")
    exploration_fraction: float = Field(default=0.16, gt=0, le=1)
    exploration_initial_eps: float = Field(default=1.0, ge=0, le=1)
    exploration_final_eps: float = Field(default=0.04, ge=0, le=1)
    max_grad_norm: float = Field(default=10.0, gt=0)
    adam_eps: float = Field(default=1e-8, gt=0, description="torch's Adam default, as SB3's DQN uses it")
    update_backend: Literal["numpy", "torch"] = Field(
        default="numpy", description="numpy: hand-written gradients (fast on CPU); torch: autograd reference"
    )
    net_arch: NetArch = Field(default_factory=lambda: [256, 256], min_length=1, max_length=8)
    activation: Literal["relu", "tanh"] = "relu"
    eval_every_steps: int = Field(default=2048, gt=0)
    eval_episodes: int = Field(default=10, gt=0, le=1000)
    threshold: float | None = 475.0

    @field_validator("train_freq", mode="before")
    @classmethod
    def _steps_only(cls, v: Any) -> Any:
        # SB3 also takes (n, "episode"); an iteration here is a fixed number of steps per shard.
        if isinstance(v, list | tuple):
            if len(v) == 2 and v[1] == "step":
                return v[0]
            raise ValueError("only a number of steps is supported (an int or [n, 'step']), not episodes")
        return v

    @field_validator("gradient_steps")
    @classmethod
    def _not_zero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be positive, or -1 for as many as transitions were collected")
        return v

    _steps_field: ClassVar[str] = "train_freq"  # each env's steps per iteration (see rollout_size)

    @model_validator(mode="after")
    def _consistent(self) -> DQNConfig:
        self._check_iterations("one iteration (n_envs * train_freq)", ("buffer_size", self.buffer_size))
        return self

    @property
    def gradient_steps_per_iteration(self) -> int:
        """Gradient steps of an iteration that trains (SB3: -1 means one per collected transition)."""
        return self.gradient_steps if self.gradient_steps > 0 else self.rollout_size


_MAX_TABLE_BINS = 1 << 20


def _positive_bins(v: int | list[int] | None) -> int | list[int] | None:
    counts = [v] if isinstance(v, int) else (v or [])
    if any(b < 1 or b > _MAX_TABLE_BINS for b in counts):
        raise ValueError(f"every bin count must be in 1..{_MAX_TABLE_BINS}")
    return v


class QLearningConfig(_Iterated):
    """Tabular Q-learning; names follow Stable-Baselines3's DQN where the two share a meaning.

    One iteration collects ``train_freq`` vectorised epsilon-greedy steps of ``n_envs`` environments
    (the exploration schedule is DQN's), appends them to the replay buffer and, once more than
    ``learning_starts`` steps were taken, applies the one-step Q-learning update to each of the
    iteration's transitions in the order they were collected (shard by shard, step by step, env by
    env); then ``replay_batches`` minibatches of ``batch_size`` transitions sampled from the buffer,
    in sampled order. ``learning_rate`` is the step size alpha.

    Observations become table rows as :mod:`ftg_common.algos.qlearning` describes: discrete ones are
    their own index; a Box needs ``bins`` (one count for every dimension, or one per dimension), and
    ``low`` / ``high`` per dimension where the space's bounds are infinite (given ones replace the
    space's; values outside are clipped into the edge bins).
    """

    algo: Literal["qlearning"] = "qlearning"
    env_id: str = "FrozenLake-v1"
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    total_steps: int = Field(default=20_000, gt=0)
    n_envs: int = Field(default=1, gt=0, le=1024)
    shards: int = Field(default=1, gt=0, le=256, description="rollout-collector invocations per iteration")
    learning_rate: float = Field(default=0.1, gt=0, le=1, description="step size alpha")
    lr_schedule: Literal["constant", "linear"] = "constant"
    gamma: float = Field(default=0.99, gt=0, le=1)
    train_freq: int = Field(default=256, gt=0, le=100_000, description="vectorised env steps per iteration")
    learning_starts: int = Field(default=0, ge=0)
    exploration_fraction: float = Field(default=0.5, gt=0, le=1)
    exploration_initial_eps: float = Field(default=1.0, ge=0, le=1)
    exploration_final_eps: float = Field(default=0.05, ge=0, le=1)
    initial_q: float = Field(default=0.0, description="every entry of the initial table")
    buffer_size: int = Field(default=10_000, gt=0, le=100_000_000, description="replay capacity, transitions")
    replay_batches: int = Field(default=0, ge=0, le=100_000, description="replayed minibatches per update")
    batch_size: int = Field(default=32, gt=0, description="transitions per replayed minibatch")
    bins: Annotated[int | list[int] | None, AfterValidator(_positive_bins)] = Field(
        default=None, description="Box: intervals per dimension (one count, or one per dimension)"
    )
    low: list[float] | None = Field(default=None, min_length=1, description="Box: lower edge per dimension")
    high: list[float] | None = Field(default=None, min_length=1, description="Box: upper edge per dimension")
    eval_every_steps: int = Field(default=2048, gt=0)
    eval_episodes: int = Field(default=10, gt=0, le=1000)
    threshold: float | None = None

    @field_validator("low", "high")
    @classmethod
    def _finite_edges(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(math.isfinite(x) for x in v):
            raise ValueError("every edge must be a finite number")
        return v

    @field_validator("high")
    @classmethod
    def _above_low(cls, v: list[float] | None, info: ValidationInfo) -> list[float] | None:
        low = info.data.get("low")
        if v is None or low is None:
            return v
        if len(v) != len(low):
            raise ValueError(f"has {len(v)} edges but low has {len(low)}")
        for d, (lo, hi) in enumerate(zip(low, v, strict=True)):
            if not hi > lo:
                raise ValueError(f"dimension {d}: {hi} is not above low ({lo})")
        return v

    _steps_field: ClassVar[str] = "train_freq"  # each env's steps per iteration (see rollout_size)

    @model_validator(mode="after")
    def _consistent(self) -> QLearningConfig:
        self._check_iterations("one iteration (n_envs * train_freq)")
        if self.replay_batches and self.batch_size > self.buffer_size:
            raise ValueError(
                f"replayed minibatches of batch_size {self.batch_size} exceed buffer_size {self.buffer_size}"
            )
        return self


def _algo_tag(value: Any) -> str:
    # A config without ``algo`` is PPO: every sweep file and stored config before DQN existed.
    if isinstance(value, dict):
        return str(value.get("algo", "ppo"))
    return str(getattr(value, "algo", "ppo"))


AlgoConfig = Annotated[
    Annotated[PPOConfig, Tag("ppo")]
    | Annotated[DQNConfig, Tag("dqn")]
    | Annotated[QLearningConfig, Tag("qlearning")],
    Discriminator(
        _algo_tag,
        custom_error_type="algo",
        custom_error_message="unsupported algorithm (supported: ppo, dqn, qlearning)",
    ),
]
"""PPO, DQN or tabular Q-learning hyperparameters, chosen by ``algo`` (absent: ``ppo``)."""

HParams = PPOConfig | DQNConfig | QLearningConfig
"""The hyperparameters of any family."""

OffPolicyHParams = DQNConfig | QLearningConfig
"""The families that run the off-policy (replay buffer) iteration."""

ALGO_CONFIGS: dict[str, type[PPOConfig] | type[DQNConfig] | type[QLearningConfig]] = {
    "ppo": PPOConfig,
    "dqn": DQNConfig,
    "qlearning": QLearningConfig,
}


def validate_algo_config(data: Any, prefix: str = "") -> HParams:
    """The hyperparameters ``data`` describes, as the model its ``algo`` names (absent: PPO).

    Args:
        data: a mapping, e.g. a sweep configuration merged over its defaults.
        prefix: field path of ``data`` in its document, prepended to every error's field name.

    Raises:
        SweepError: unknown ``algo`` or an invalid field; every problem names its field path
            (``<prefix>.algo``, ``<prefix>.buffer_size``, ...).
    """
    if not isinstance(data, dict):
        raise SweepError(f"{prefix or '<root>'}: must be a mapping of hyperparameters")
    algo = data.get("algo", "ppo")
    model = ALGO_CONFIGS.get(algo) if isinstance(algo, str) else None
    if model is None:
        where = f"{prefix}.algo" if prefix else "algo"
        raise SweepError(f"{where}: unsupported algorithm {algo!r} (supported: {', '.join(ALGO_CONFIGS)})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SweepError(format_validation_error(exc, prefix=prefix)) from exc


class RunConfig(_Strict):
    """What a run's functions read from ``runs/<run_id>/config.json``.

    ``algo`` names the family and exactly one of ``ppo`` / ``dqn`` / ``qlearning`` holds its
    hyperparameters. The absent ones are left out of dumps, so a PPO config stores (and hashes) exactly
    as it did before DQN existed.
    """

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    seed: int = Field(ge=0, lt=2**31)
    algo: Literal["ppo", "dqn", "qlearning"] = "ppo"
    ppo: PPOConfig | None = None
    dqn: DQNConfig | None = None
    qlearning: QLearningConfig | None = None
    sweep_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    config_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _infer_algo(cls, data: Any) -> Any:
        # RunConfig(..., dqn=DQNConfig()) without ``algo`` means a DQN run.
        if isinstance(data, dict) and "algo" not in data:
            for name in ("dqn", "qlearning"):
                if data.get(name) is not None:
                    return {**data, "algo": name}
        return data

    @model_validator(mode="after")
    def _one_family(self) -> RunConfig:
        present = [name for name in ALGO_CONFIGS if getattr(self, name) is not None]
        if present != [self.algo]:
            raise ValueError(
                f"algo {self.algo!r} needs exactly its own hyperparameters ({self.algo}); "
                f"got {present or 'none'}"
            )
        return self

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in ALGO_CONFIGS:
            if data.get(name) is None:
                data.pop(name, None)
        return data

    @classmethod
    def for_algo(cls, run_id: str, seed: int, hparams: HParams, **kw: Any) -> RunConfig:
        """The run config holding ``hparams`` under the field of its algorithm."""
        if isinstance(hparams, QLearningConfig):
            return cls(run_id=run_id, seed=seed, algo="qlearning", qlearning=hparams, **kw)
        if isinstance(hparams, DQNConfig):
            return cls(run_id=run_id, seed=seed, algo="dqn", dqn=hparams, **kw)
        return cls(run_id=run_id, seed=seed, algo="ppo", ppo=hparams, **kw)

    @property
    def hparams(self) -> HParams:
        """The run's hyperparameters, whichever the family (the fields all share: env, sizes, eval)."""
        hp = {"ppo": self.ppo, "dqn": self.dqn, "qlearning": self.qlearning}[self.algo]
        assert hp is not None  # _one_family
        return hp

    @property
    def ppo_config(self) -> PPOConfig:
        """The PPO hyperparameters; ValueError for a run of another algorithm."""
        if self.ppo is None:
            raise ValueError(f"run {self.run_id} is a {self.algo} run, not ppo")
        return self.ppo

    @property
    def dqn_config(self) -> DQNConfig:
        """The DQN hyperparameters; ValueError for a run of another algorithm."""
        if self.dqn is None:
            raise ValueError(f"run {self.run_id} is a {self.algo} run, not dqn")
        return self.dqn

    @property
    def off_policy_hparams(self) -> OffPolicyHParams | None:
        """The hyperparameters of a replay-buffer family (DQN, Q-learning); None for PPO."""
        return self.dqn or self.qlearning

    @property
    def off_policy(self) -> bool:
        """True for the replay-buffer families, DQN and Q-learning (their own iteration template)."""
        return self.algo in ("dqn", "qlearning")

    def digest(self) -> str:
        """Short content hash of this config (see ``config_digest``)."""
        return config_digest(self)

    def to_stored(self) -> dict[str, Any]:
        """What ``runs/<run_id>/config.json`` holds: the config plus its digest."""
        return {**self.model_dump(mode="json"), "digest": self.digest()}

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> RunConfig:
        """Validate a stored ``config.json``; ValueError if its digest does not match the content."""
        data = dict(data)
        digest = data.pop("digest", None)
        cfg = cls.model_validate(data)
        if digest is not None and digest != cfg.digest():
            raise ValueError(f"stored config of run {cfg.run_id} does not match its digest {digest}")
        return cfg


def config_digest(cfg: RunConfig) -> str:
    """First 16 hex digits of the SHA-256 of the config's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ZooRef(_Strict):
    """A sweep's ``zoo`` key: an RL Zoo ``ppo.yml`` entry the sweep's configs start from.

    Attributes:
        file: path of the Zoo hyperparameter file (relative: to the sweep file's folder, else the
            working directory).
        env: the entry (env id) to read.
        shards: rollout-collector invocations per iteration (default: 2 when n_envs is even, else 1).
        accept_unhonoured: run even when the entry holds items this project cannot honour (they are
            reported either way).
    """

    file: str = Field(min_length=1)
    env: str = Field(min_length=1)
    shards: int | None = Field(default=None, gt=0, le=256)
    accept_unhonoured: bool = False


class SweepConfig(_Strict):
    """A sweep file: named configurations x seeds, each pair one trial (its own run).

    With ``zoo``, the Zoo entry's translation is the base of every config: ``defaults`` and each
    config's overrides go on top of it (``load_sweep`` merges it into ``defaults``).
    """

    name: str = Field(pattern=RUN_ID_PATTERN)
    description: str = ""
    zoo: ZooRef | None = None
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    max_parallel: int = Field(default=2, gt=0, le=64)
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="hyperparameters shared by all configs"
    )
    configs: dict[str, dict[str, Any]] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _seed_range(cls, v: list[int]) -> list[int]:
        if any(s < 0 or s >= 2**31 for s in v):
            raise ValueError("seeds must be in [0, 2**31)")
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @field_validator("configs")
    @classmethod
    def _config_names(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        import re

        for name in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", name):
                raise ValueError(f"config name {name!r} must match [a-z0-9][a-z0-9-]{{0,30}}")
        return v

    def trial_configs(self) -> dict[str, HParams]:
        """Each named config merged over ``defaults`` and validated as the model its ``algo`` names.

        Errors name the field as ``configs.<name>.<field>``.
        """
        return {
            name: validate_algo_config({**self.defaults, **(overrides or {})}, prefix=f"configs.{name}")
            for name, overrides in self.configs.items()
        }


class SweepError(ValueError):
    """An invalid sweep file; the message names the offending field path."""


def format_validation_error(exc: Any, prefix: str = "") -> str:
    """One line per problem, each naming the field path."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        path = ".".join(p for p in (prefix, loc) if p)
        lines.append(f"{path or '<root>'}: {err.get('msg')}")
    return "; ".join(lines)


def read_zoo_ref(ref: ZooRef, base_dir: str | None = None) -> tuple[ZooRef, ZooEntry]:
    """Read the Zoo entry ``ref`` names; returns the ref with its file's absolute path, and the entry.

    Raises:
        SweepError: the file or entry cannot be read (field ``zoo.file`` / ``zoo.env``), or it holds
            items that cannot be honoured and ``accept_unhonoured`` is off (field ``zoo``).
    """
    import os

    from ftg_common.zoo import ZooError, load_zoo_entry

    path = ref.file
    if not os.path.isabs(path) and base_dir is not None and os.path.exists(os.path.join(base_dir, path)):
        path = os.path.join(base_dir, path)
    if not os.path.exists(path):
        raise SweepError(f"zoo.file: no such file {ref.file}")
    try:
        entry = load_zoo_entry(path, ref.env, shards=ref.shards)
    except ZooError as exc:
        raise SweepError(f"zoo.env: {exc}") from exc
    if entry.unhonoured and not ref.accept_unhonoured:
        items = "; ".join(str(u) for u in entry.unhonoured)
        raise SweepError(
            f"zoo: the {ref.env} entry holds what cannot be honoured: {items} "
            "(set zoo.accept_unhonoured: true, or --accept-unhonoured, to run without them)"
        )
    return ref.model_copy(update={"file": os.path.abspath(path)}), entry


def load_sweep(text: str, base_dir: str | None = None) -> SweepConfig:
    """Parse and validate a sweep YAML document; raises SweepError with field names.

    A ``zoo`` key is resolved here: its entry's translation becomes the base of ``defaults``.

    Args:
        text: the YAML (or JSON) document.
        base_dir: folder of the sweep file, against which a relative ``zoo.file`` is looked up first.
    """
    import yaml
    from pydantic import ValidationError

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SweepError(f"sweep file is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SweepError("sweep file must be a mapping with keys name, seeds, configs")
    if raw.get("zoo") is not None:
        try:
            ref = ZooRef.model_validate(raw["zoo"])
        except ValidationError as exc:
            raise SweepError(format_validation_error(exc, prefix="zoo")) from exc
        ref, entry = read_zoo_ref(ref, base_dir)
        defaults = raw.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise SweepError("defaults: must be a mapping of hyperparameters")
        raw = {**raw, "zoo": ref.model_dump(), "defaults": {**entry.ppo_kwargs(), **defaults}}
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise SweepError(format_validation_error(exc)) from exc
    sweep.trial_configs()
    return sweep
