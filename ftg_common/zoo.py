"""RL Zoo hyperparameter files (``hyperparams/ppo.yml``) read as they are, translated to this project's keys.

An RL Zoo entry is a YAML mapping under an env id. Besides plain PPO keyword arguments it holds keys the
Zoo's experiment manager consumes itself (``n_envs``, ``n_timesteps``, ``normalize``, ``env_wrapper``,
``frame_stack``, ``callback``, ...) and strings the Zoo hands to Python's ``eval``: ``policy_kwargs``
such as ``"dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256],
vf=[256, 256]))"`` and ``normalize`` such as ``"{'norm_obs': False, 'norm_reward': True}"``. Nothing here
evaluates anything: those strings are parsed with :mod:`ast`, accepting only literals, ``dict(...)``
calls with keyword arguments and a whitelist of ``nn.<Activation>`` / ``optim.<Optimizer>`` names.

The translation fills every key the entry leaves out with Stable-Baselines3's own default (PPO:
``n_steps`` 2048, ``batch_size`` 64, ``n_epochs`` 10, ``gamma`` 0.99, ``gae_lambda`` 0.95, constant
``learning_rate`` 3e-4 and ``clip_range`` 0.2, ...; the Zoo's ``n_envs`` default is 1), never with this
project's defaults, which are the Zoo's CartPole entry. What it cannot honour is reported by name with
the reason, and what it honours in a different but equivalent form is listed as an adjustment.
"""

from __future__ import annotations

import ast
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "NEW_KEYS",
    "SB3_PPO_DEFAULTS",
    "TorchName",
    "Unhonoured",
    "ZooEntry",
    "ZooError",
    "load_zoo_entry",
    "load_zoo_file",
    "parse_python_literal",
    "translate",
]


class ZooError(ValueError):
    """An RL Zoo file or entry that cannot be read; the message names the key and the offending text."""


# --------------------------------------------------------------------------------------------------
# Safe parsing of the Zoo's Python strings
# --------------------------------------------------------------------------------------------------

_MAX_EXPRESSION = 10_000

# torch.nn activation classes and torch.optim optimizers a Zoo string may name.
_ACTIVATIONS = frozenset(
    [
        "CELU",
        "ELU",
        "GELU",
        "Hardsigmoid",
        "Hardswish",
        "Hardtanh",
        "Identity",
        "LeakyReLU",
        "LogSigmoid",
        "Mish",
        "PReLU",
        "ReLU",
        "ReLU6",
        "SELU",
        "SiLU",
        "Sigmoid",
        "Softplus",
        "Softsign",
        "Tanh",
        "Tanhshrink",
    ]
)
_OPTIMIZERS = frozenset(
    ["Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "SGD"]
)
# Module paths the Zoo's files use for torch names (``th`` is the Zoo's alias of ``torch``).
_MODULES = {
    ("nn",): "nn",
    ("th", "nn"): "nn",
    ("torch", "nn"): "nn",
    ("optim",): "optim",
    ("th", "optim"): "optim",
    ("torch", "optim"): "optim",
}


@dataclass(frozen=True)
class TorchName:
    """A whitelisted torch class named in a Zoo string, never imported: ``nn.ReLU`` -> ("nn", "ReLU")."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


def _dotted(node: ast.expr) -> tuple[str, ...] | None:
    """("th", "nn", "ReLU") for the expression ``th.nn.ReLU``; None for anything but names and dots."""
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else (*head, node.attr)
    return None


class _LiteralReader:
    """Turns a parsed expression into Python values, refusing every node outside the whitelist."""

    def __init__(self, key: str, text: str) -> None:
        self.key = key
        self.text = text

    def refuse(self, node: ast.AST, why: str) -> ZooError:
        snippet = ast.unparse(node) if isinstance(node, ast.AST) else str(node)
        return ZooError(f"{self.key}: refused {self.text!r}: {snippet!r} {why}")

    def read(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, bool | int | float | str):
                return node.value
            raise self.refuse(node, "is not a number, string, boolean or None")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self.read(node.operand)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.refuse(node, "negates something other than a number")
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.read(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            return self.read_dict(node)
        if isinstance(node, ast.Call):
            return self.read_call(node)
        if isinstance(node, ast.Attribute | ast.Name):
            return self.read_name(node)
        raise self.refuse(node, "is not allowed (only literals, dict(...) and nn.<Activation> names)")

    def read_dict(self, node: ast.Dict) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                raise self.refuse(v, "is unpacked with ** (not allowed)")
            key = self.read(k)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise self.refuse(k, "is not a valid dictionary key")
            out[key] = self.read(v)
        return out

    def read_call(self, node: ast.Call) -> dict[str, Any]:
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
            raise self.refuse(node, "is a call; only dict(...) with keyword arguments is allowed")
        if node.args:
            raise self.refuse(node, "passes positional arguments to dict (only keyword arguments)")
        out: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.refuse(kw.value, "is unpacked with ** (not allowed)")
            out[kw.arg] = self.read(kw.value)
        return out

    def read_name(self, node: ast.Attribute | ast.Name) -> TorchName:
        path = _dotted(node)
        module = _MODULES.get(path[:-1]) if path else None
        allowed = _ACTIVATIONS if module == "nn" else _OPTIMIZERS if module == "optim" else frozenset()
        if path is None or path[-1] not in allowed:
            raise self.refuse(
                node, "is not a whitelisted name (nn.<Activation> such as nn.ReLU, or optim.Adam)"
            )
        assert module is not None
        return TorchName(module, path[-1])


def parse_python_literal(text: str, key: str) -> Any:
    """Read one of the Zoo's Python strings without evaluating it.

    Accepts numbers, strings, booleans, None, lists, tuples, ``{...}`` dicts, ``dict(k=v, ...)`` and
    whitelisted torch names (``nn.ReLU``, ``th.nn.Tanh``, ``optim.Adam``, returned as
    :class:`TorchName`). Everything else (calls, subscripts, operators, lambdas, other names) is refused.

    Args:
        text: the string from the file, e.g. ``"dict(ortho_init=False, net_arch=[64, 64])"``.
        key: the entry key it came from, named in errors.

    Raises:
        ZooError: naming ``key`` and the offending text.
    """
    if len(text) > _MAX_EXPRESSION:
        raise ZooError(f"{key}: refused a {len(text)}-character expression (at most {_MAX_EXPRESSION})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ZooError(f"{key}: {text!r} is not a Python expression: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ZooError(f"{key}: refused {text!r}: nested too deeply or not text") from None
    try:
        return _LiteralReader(key, text).read(tree.body)
    except RecursionError:
        raise ZooError(f"{key}: refused {text!r}: nested too deeply") from None


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------


def load_zoo_file(path_or_text: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping env id -> entry of a Zoo YAML file.

    Args:
        path_or_text: a path (a ``PathLike``, or a string without a newline) or the YAML text itself
            (a string with at least one newline).

    Raises:
        ZooError: unreadable file, YAML error, or a document that is not a mapping of mappings.
    """
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        text, where = path_or_text, "<text>"
    else:
        where = os.fspath(path_or_text)
        try:
            text = Path(where).read_text(encoding="utf-8")
        except OSError as exc:
            raise ZooError(f"cannot read RL Zoo file {where}: {exc.strerror or exc}") from None
    try:
        # safe_load: the Zoo's files use plain YAML plus !!float tags and merge keys (<<: *anchor).
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ZooError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ZooError(f"{where}: an RL Zoo file is a mapping of env ids to hyperparameters")
    return doc


def load_zoo_entry(
    path_or_text: str | os.PathLike[str], env_id: str, *, shards: int | None = None
) -> ZooEntry:
    """Read the entry for ``env_id`` of a Zoo file and translate it (see :func:`translate`).

    Raises:
        ZooError: the file cannot be read, has no entry for ``env_id`` (the error lists the ones it
            has), or holds a value that cannot be read (named by its key).
    """
    doc = load_zoo_file(path_or_text)
    if env_id not in doc:
        known = ", ".join(sorted(str(k) for k in doc)[:40])
        raise ZooError(f"env {env_id!r} has no entry in the RL Zoo file (entries: {known})")
    entry = doc[env_id]
    if not isinstance(entry, dict):
        raise ZooError(
            f"{env_id}: the entry must be a mapping of hyperparameters, got {type(entry).__name__}"
        )
    return translate(entry, env_id, shards=shards)


# --------------------------------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------------------------------

SB3_PPO_DEFAULTS: dict[str, Any] = {
    "n_envs": 1,  # the Zoo's default when an entry has no n_envs
    "n_steps": 2048,
    "batch_size": 64,
    "n_epochs": 10,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "learning_rate": 3e-4,
    "lr_schedule": "constant",
    "clip_range": 0.2,
    "clip_schedule": "constant",
    "clip_range_vf": None,
    "normalize_advantage": True,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "target_kl": None,
    "adam_eps": 1e-5,  # SB3's policies pass eps=1e-5 to Adam unless optimizer_kwargs are given
    "net_arch": [64, 64],
    "activation": "tanh",
    "ortho_init": True,
    "log_std_init": 0.0,
    "normalize": None,
    "use_sde": False,
    "sde_sample_freq": -1,
    "sde_full_std": True,
    "sde_use_expln": False,
}
"""Stable-Baselines3's PPO / MlpPolicy defaults, under this project's key names."""

NEW_KEYS = frozenset({"normalize", "use_sde", "sde_sample_freq", "sde_full_std", "sde_use_expln"})
"""Keys of a translated entry added to PPOConfig with the Zoo's features (normalisation and gSDE)."""

_NORMALIZE_DEFAULTS: dict[str, Any] = {
    "norm_obs": True,
    "norm_reward": True,
    "clip_obs": 10.0,
    "clip_reward": 10.0,
    "gamma": 0.99,
    "epsilon": 1e-8,
}
_TORCH_ADAM_EPS = 1e-8


@dataclass(frozen=True)
class Unhonoured:
    """A key (or ``policy_kwargs.<name>``) of the entry this project cannot honour, and why."""

    key: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value}: {self.reason}"


@dataclass(frozen=True)
class ZooEntry:
    """One RL Zoo entry and its translation.

    Attributes:
        env_id: the entry's env id.
        hyperparams: the entry as the file gives it (strings unparsed).
        config: PPOConfig keys (every one set, SB3's defaults where the entry is silent) plus
            :data:`NEW_KEYS`: ``normalize`` (None or a dict of VecNormalize options), ``use_sde``,
            ``sde_sample_freq``, ``sde_full_std``, ``sde_use_expln``.
        unhonoured: what the translation cannot honour, by key, with the reason.
        adjustments: what it honours in another, equivalent form (e.g. a capped ``batch_size``).
    """

    env_id: str
    hyperparams: dict[str, Any]
    config: dict[str, Any]
    unhonoured: tuple[Unhonoured, ...]
    adjustments: tuple[str, ...]

    def ppo_kwargs(self) -> dict[str, Any]:
        """``config`` as PPOConfig keyword arguments (every key, :data:`NEW_KEYS` included)."""
        return dict(self.config)


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return " ".join(text.split())


@dataclass
class _Translation:
    env_id: str
    config: dict[str, Any]
    unhonoured: list[Unhonoured] = field(default_factory=list)
    adjustments: list[str] = field(default_factory=list)
    normalize: Any = False
    normalize_kwargs: dict[str, Any] = field(default_factory=dict)

    def refuse(self, key: str, value: Any, reason: str) -> None:
        self.unhonoured.append(Unhonoured(key, _show(value), reason))


# --- value readers ---------------------------------------------------------------------------------


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        hint = ""
        if isinstance(value, str):
            hint = " (YAML reads 1e5 without a dot as text: write !!float 1e5)"
        raise ZooError(f"{key}: expected a number, got {_show(value)!r}{hint}")
    if not math.isfinite(value):
        raise ZooError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def _integer(key: str, value: Any) -> int:
    x = _number(key, value)
    if not x.is_integer():
        raise ZooError(f"{key}: expected a whole number, got {_show(value)!r}")
    return int(x)


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ZooError(f"{key}: expected true or false, got {_show(value)!r}")
    return value


def _mapping(key: str, value: Any) -> dict[str, Any]:
    """A YAML mapping, or a Zoo string holding a dict (parsed safely)."""
    parsed = parse_python_literal(value, key) if isinstance(value, str) else value
    if not isinstance(parsed, dict) or not all(isinstance(k, str) for k in parsed):
        raise ZooError(f"{key}: expected a dict of keyword arguments, got {_show(value)!r}")
    return parsed


# --- top-level keys --------------------------------------------------------------------------------


def _schedule(target: str, schedule_key: str | None) -> Callable[[_Translation, str, Any], None]:
    """Handler of a key that may be a constant or the Zoo's linear schedule string ``lin_<initial>``."""

    def handle(t: _Translation, key: str, value: Any) -> None:
        if isinstance(value, str):
            kind, _, initial = value.partition("_")
            if kind not in ("lin", "linear") or not initial:
                raise ZooError(f"{key}: unknown schedule {value!r} (the Zoo's form is lin_<initial value>)")
            try:
                start = float(initial)
            except ValueError:
                raise ZooError(f"{key}: {value!r} has no number after 'lin_'") from None
            if schedule_key is None:
                t.refuse(key, value, "only a constant is supported for this key, not a linear schedule")
                return
            t.config[target], t.config[schedule_key] = start, "linear"
            return
        t.config[target] = _number(key, value)
        if schedule_key is not None:
            t.config[schedule_key] = "constant"

    return handle


def _clip_range_vf(t: _Translation, key: str, value: Any) -> None:
    if value is None:
        t.config["clip_range_vf"] = None
    elif isinstance(value, str):
        _schedule("clip_range_vf", None)(t, key, value)
    else:
        x = _number(key, value)
        if x <= 0:
            raise ZooError(f"{key}: must be positive (or null to turn value clipping off), got {value!r}")
        t.config["clip_range_vf"] = x


def _copy(target: str, read: Callable[[str, Any], Any]) -> Callable[[_Translation, str, Any], None]:
    def handle(t: _Translation, key: str, value: Any) -> None:
        t.config[target] = read(key, value)

    return handle


def _checked(read: Callable[[str, Any], Any]) -> Callable[[_Translation, str, Any], None]:
    """Handler of a key whose every valid value means the same network here: only its type is checked."""

    def handle(t: _Translation, key: str, value: Any) -> None:
        read(key, value)

    return handle


def _optional_number(key: str, value: Any) -> float | None:
    return None if value is None else _number(key, value)


def _n_timesteps(t: _Translation, key: str, value: Any) -> None:
    # The Zoo takes int(n_timesteps): !!float 1e5 -> 100000.
    t.config["total_steps"] = int(_number(key, value))


def _policy(t: _Translation, key: str, value: Any) -> None:
    if value != "MlpPolicy":
        t.refuse(key, value, "only MlpPolicy (flat observations, separate actor and critic MLPs) exists here")


def _normalize(t: _Translation, key: str, value: Any) -> None:
    t.normalize = value if isinstance(value, bool) else _mapping(key, value)


def _normalize_kwargs(t: _Translation, key: str, value: Any) -> None:
    t.normalize_kwargs = _mapping(key, value)


def _not_applied(reason: str) -> Callable[[_Translation, str, Any], None]:
    def handle(t: _Translation, key: str, value: Any) -> None:
        t.refuse(key, value, reason)

    return handle


def _no_effect(t: _Translation, key: str, value: Any) -> None:
    t.adjustments.append(f"{key} = {_show(value)} does not change training here; ignored")


# --- policy_kwargs ---------------------------------------------------------------------------------


def _net_arch(t: _Translation, key: str, value: Any) -> None:
    arch = value
    if isinstance(arch, list) and len(arch) == 1 and isinstance(arch[0], dict):
        t.adjustments.append(f"{key}: the old form [dict(pi=..., vf=...)] read as dict(pi=..., vf=...)")
        arch = arch[0]
    if isinstance(arch, dict):
        if set(arch) - {"pi", "vf"}:
            raise ZooError(f"{key}: a dict net_arch takes only pi and vf, got {_show(value)!r}")
        pi, vf = arch.get("pi", []), arch.get("vf", [])
        if pi != vf:
            t.refuse(
                key, value, f"actor and critic share one architecture here; the actor's {pi} is used for both"
            )
        arch = pi
    if not (isinstance(arch, list) and all(isinstance(h, int) and not isinstance(h, bool) for h in arch)):
        t.refuse(key, value, "only a list of layer widths or dict(pi=[...], vf=[...]) is supported")
        return
    if not arch or any(h <= 0 for h in arch):
        t.refuse(key, value, "at least one hidden layer of positive width is needed here")
        return
    t.config["net_arch"] = list(arch)


def _activation_fn(t: _Translation, key: str, value: Any) -> None:
    names = {"ReLU": "relu", "Tanh": "tanh"}
    if not (isinstance(value, TorchName) and value.module == "nn"):
        raise ZooError(f"{key}: expected an activation class such as nn.ReLU, got {_show(value)!r}")
    if value.name not in names:
        t.refuse(key, str(value), "only nn.Tanh and nn.ReLU are implemented")
        return
    t.config["activation"] = names[value.name]


def _optimizer_class(t: _Translation, key: str, value: Any) -> None:
    if not (isinstance(value, TorchName) and value.module == "optim"):
        raise ZooError(f"{key}: expected an optimizer class such as th.optim.Adam, got {_show(value)!r}")
    if value.name != "Adam":
        t.refuse(key, str(value), "only Adam is implemented")


def _optimizer_kwargs(t: _Translation, key: str, value: Any) -> None:
    kwargs = _mapping(key, value)
    # Given optimizer_kwargs, SB3 no longer sets eps=1e-5: Adam's own default applies.
    t.config["adam_eps"] = _number(f"{key}.eps", kwargs.pop("eps", _TORCH_ADAM_EPS))
    for name, v in kwargs.items():
        t.refuse(f"{key}.{name}", v, "only Adam's eps is configurable here")


def _policy_flag(
    target: str | None, honoured: bool | None = None
) -> Callable[[_Translation, str, Any], None]:
    """A boolean policy keyword: copied to ``target``, or accepted only when it equals ``honoured``."""

    def handle(t: _Translation, key: str, value: Any) -> None:
        flag = _boolean(key, value)
        if target is not None:
            t.config[target] = flag
        elif flag != honoured:
            t.refuse(key, value, f"only {honoured} is implemented")

    return handle


_POLICY_KWARGS: dict[str, Callable[[_Translation, str, Any], None]] = {
    "net_arch": _net_arch,
    "activation_fn": _activation_fn,
    "log_std_init": _copy("log_std_init", _number),
    "ortho_init": _policy_flag("ortho_init"),
    "full_std": _policy_flag("sde_full_std"),
    "use_expln": _policy_flag("sde_use_expln"),
    "squash_output": _policy_flag(None, honoured=False),
    # An MlpPolicy's flatten extractor has no parameters, so sharing it or not is the same network.
    "share_features_extractor": _checked(_boolean),
    "optimizer_class": _optimizer_class,
    "optimizer_kwargs": _optimizer_kwargs,
}


def _policy_kwargs(t: _Translation, key: str, value: Any) -> None:
    for name, v in _mapping(key, value).items():
        handler = _POLICY_KWARGS.get(name)
        if handler is None:
            t.refuse(f"{key}.{name}", v, "not a policy keyword this project implements")
        else:
            handler(t, f"{key}.{name}", v)


_FEATURE_REASON = "this project builds envs with gymnasium.make and env_kwargs only"

_HANDLERS: dict[str, Callable[[_Translation, str, Any], None]] = {
    "n_envs": _copy("n_envs", _integer),
    "n_timesteps": _n_timesteps,
    "policy": _policy,
    "n_steps": _copy("n_steps", _integer),
    "batch_size": _copy("batch_size", _integer),
    "n_epochs": _copy("n_epochs", _integer),
    "gamma": _copy("gamma", _number),
    "gae_lambda": _copy("gae_lambda", _number),
    "learning_rate": _schedule("learning_rate", "lr_schedule"),
    "clip_range": _schedule("clip_range", "clip_schedule"),
    "clip_range_vf": _clip_range_vf,
    "normalize_advantage": _copy("normalize_advantage", _boolean),
    "ent_coef": _copy("ent_coef", _number),
    "vf_coef": _copy("vf_coef", _number),
    "max_grad_norm": _copy("max_grad_norm", _number),
    "target_kl": _copy("target_kl", _optional_number),
    "use_sde": _copy("use_sde", _boolean),
    "sde_sample_freq": _copy("sde_sample_freq", _integer),
    "policy_kwargs": _policy_kwargs,
    "normalize": _normalize,
    "normalize_kwargs": _normalize_kwargs,
    "env_wrapper": _not_applied(f"env wrappers are not applied: {_FEATURE_REASON}"),
    "vec_env_wrapper": _not_applied(f"vectorised-env wrappers are not applied: {_FEATURE_REASON}"),
    "frame_stack": _not_applied("frame stacking is not implemented (observations are single frames)"),
    "callback": _not_applied("training callbacks are not supported (the function graph is fixed)"),
    "monitor_kwargs": _not_applied("episode statistics are recorded by the collector, not a Monitor"),
    "rollout_buffer_class": _not_applied("the rollout buffer is the trajectory object; no custom class"),
    "rollout_buffer_kwargs": _not_applied("the rollout buffer is the trajectory object; no options"),
    "seed": _not_applied("seeds come from the sweep (seeds: [...]), one run per seed"),
    "device": _no_effect,
    "verbose": _no_effect,
    "tensorboard_log": _no_effect,
    "stats_window_size": _no_effect,
}


# --- resolving what depends on several keys ------------------------------------------------------


def _resolve_normalize(t: _Translation, hyperparams: Mapping[str, Any]) -> None:
    """VecNormalize options from ``normalize`` (+ ``normalize_kwargs``), with the Zoo's gamma rule."""
    if t.normalize is False:
        t.config["normalize"] = None
        if t.normalize_kwargs:
            t.refuse("normalize_kwargs", t.normalize_kwargs, "has no effect: normalize is off")
        return
    options = dict(_NORMALIZE_DEFAULTS)
    given = {**(t.normalize if isinstance(t.normalize, dict) else {}), **t.normalize_kwargs}
    for name, v in given.items():
        key = f"normalize.{name}"
        if name in ("norm_obs", "norm_reward"):
            options[name] = _boolean(key, v)
        elif name in ("clip_obs", "clip_reward", "gamma", "epsilon"):
            options[name] = _number(key, v)
        elif name == "training":
            if not _boolean(key, v):
                t.refuse(key, v, "frozen statistics during training are not supported")
        else:
            t.refuse(key, v, "not a VecNormalize option this project implements (Box observations only)")
    # The Zoo normalises returns with the algorithm's discount whenever the entry sets gamma.
    if "gamma" in hyperparams:
        options["gamma"] = t.config["gamma"]
    if not (options["norm_obs"] or options["norm_reward"]):
        t.adjustments.append("normalize: both norm_obs and norm_reward are off, so nothing is normalised")
    t.config["normalize"] = options


def _resolve_sizes(t: _Translation, shards: int | None) -> None:
    c = t.config
    n_envs = c["n_envs"]
    if n_envs <= 0:
        raise ZooError(f"n_envs: must be positive, got {n_envs}")
    if shards is None:
        # Shards are this project's choice, not the Zoo's: two collectors when the envs split evenly.
        shards = 2 if n_envs % 2 == 0 else 1
    elif shards <= 0 or n_envs % shards:
        raise ZooError(f"shards: {shards} does not divide n_envs ({n_envs})")
    c["shards"] = shards
    rollout = n_envs * c["n_steps"]
    if c["batch_size"] > rollout:
        t.adjustments.append(
            f"batch_size {c['batch_size']} exceeds one rollout (n_envs * n_steps = {rollout}); SB3 then "
            f"takes the whole rollout as a single minibatch, so batch_size = {rollout}"
        )
        c["batch_size"] = rollout
    if c["use_sde"] is False and c["sde_sample_freq"] != -1:
        t.adjustments.append("sde_sample_freq has no effect without use_sde (as in SB3)")


def _threshold(t: _Translation) -> None:
    """The env's registered reward threshold (the Zoo's 'solved' line), None when it has none."""
    import gymnasium as gym  # local: reading a Zoo file needs no env unless one is translated

    spec = gym.envs.registry.get(t.env_id)
    t.config["threshold"] = None if spec is None else spec.reward_threshold
    if spec is None:
        t.adjustments.append(f"{t.env_id} is not a registered gymnasium env here: no threshold")


def translate(hyperparams: Mapping[str, Any], env_id: str, *, shards: int | None = None) -> ZooEntry:
    """Translate one Zoo entry to this project's configuration keys.

    Args:
        hyperparams: the entry's mapping as YAML gives it.
        env_id: the env the entry is for.
        shards: rollout-collector invocations per iteration (must divide ``n_envs``); default 2 when
            ``n_envs`` is even, else 1.

    Returns:
        The translation; ``config`` is ready for PPOConfig (see :meth:`ZooEntry.ppo_kwargs`).

    Raises:
        ZooError: a value that cannot be read (wrong type, unsafe string), named by its key; a
            missing ``n_timesteps`` (the Zoo needs it too).
    """
    t = _Translation(env_id, {"env_id": env_id, **{k: _fresh(v) for k, v in SB3_PPO_DEFAULTS.items()}})
    if "n_timesteps" not in hyperparams:
        raise ZooError(f"{env_id}: the entry has no n_timesteps (the RL Zoo requires it)")
    for key, value in hyperparams.items():
        handler = _HANDLERS.get(str(key))
        if handler is None:
            t.refuse(str(key), value, "unknown key: not an RL Zoo PPO hyperparameter")
        else:
            handler(t, str(key), value)
    _resolve_normalize(t, hyperparams)
    _resolve_sizes(t, shards)
    _threshold(t)
    return ZooEntry(env_id, dict(hyperparams), t.config, tuple(t.unhonoured), tuple(t.adjustments))


def _fresh(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
