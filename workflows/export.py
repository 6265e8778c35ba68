"""Export a run's deterministic policy (observation -> action) to run without FaaSTrainGym.

Three formats, all built from a stored policy version's weights:

- ``onnx``: one self-contained ``.onnx`` file (input ``obs`` float32 [batch, obs_dim], output ``action``),
  for onnxruntime and every ONNX consumer; the spec below is in the model's metadata (``ftg_spec``).
- ``torchscript``: a ``torch.jit`` archive (``torch.jit.load(path)(obs)``), loadable from Python or
  C++ libtorch; the spec is its extra file ``ftg_spec.json``.
- ``safetensors``: the network's tensors (``layers.<i>.weight`` [out, in], ``layers.<i>.bias``) plus the
  spec as a JSON file beside it (:func:`spec_path`) and in the safetensors metadata.

The action is what the project's evaluation takes:

- a PPO run with a Discrete action space: the argmax of the actor's logits (int64 [batch]);
- a PPO run with a Box action space: the Gaussian mean, clipped to the action space's bounds as the
  evaluator and the environment wrapper clip it (float32 [batch, action_dim]);
- a DQN run: the greedy action, argmax of the online Q-network's values (int64 [batch]).

Every format takes the observation exactly as the environment emits it, as a float32 vector (a
Discrete observation: its index; a Tuple of Discrete or a MultiDiscrete: the indices), and does what
the evaluator does before the network (:mod:`ftg_common.policy.preprocess`): normalisation with the
version's frozen statistics when the run normalises observations, then the one-hot encoding of
Discrete, MultiDiscrete and Tuple-of-Discrete observations. In ONNX and TorchScript this is part of
the graph (normalisation in float64, as the evaluator computes it; an index outside its range gives
an all-zero block); a safetensors consumer applies it from the spec.

The spec (JSON) describes the network completely: ``obs_dim`` (the network's input width),
``layers`` (their count; the hidden activation follows every layer but the last), ``activation``,
``observation`` (the raw input: dtype and shape), ``action`` (``kind``, ``n`` or ``dim``, the ``rule``
turning the last layer's output into the action: ``argmax``, ``clip`` with ``low`` and ``high`` (null:
unbounded) or ``identity``) and, for a run that normalises or encodes its observations, ``preprocess``
(:meth:`~ftg_common.policy.preprocess.ObsPreprocess.metadata`: the encoding, and the statistics
``mean``, ``var``, ``count``, ``clip_obs``, ``epsilon``). Ties in an argmax go to the lowest index, as in
numpy.

torch is imported with this module: import it where an export is asked for, not on a hot path.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from ftg_common import layout
from ftg_common.algos.qnet import QNET_SPEC_METADATA_KEY, QNetSpec
from ftg_common.checkpoints import read_policy_file, read_qnet
from ftg_common.meta.base import MetaStore, RunNotFoundError
from ftg_common.policy.preprocess import ObsPreprocess
from ftg_common.policy.qtable import QTABLE_SPEC_METADATA_KEY
from ftg_common.policy.spec import PolicySpec
from ftg_common.store.base import KeyNotFoundError, ObjectStore

__all__ = [
    "FORMATS",
    "ArgmaxPolicy",
    "ClippedMeanPolicy",
    "SPEC_FORMAT",
    "ExportFormat",
    "ExportedNetwork",
    "build_module",
    "export_final_policy",
    "export_policy",
    "final_version",
    "load_network",
    "spec_path",
]

ExportFormat = Literal["onnx", "torchscript", "safetensors"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
SPEC_FORMAT = "ftg-deterministic-policy/1"
_SPEC_KEY = "ftg_spec"  # ONNX metadata key and safetensors metadata key of the spec
_TORCHSCRIPT_SPEC_FILE = "ftg_spec.json"


@dataclass(frozen=True)
class ExportedNetwork:
    """The network of a policy version as exported: an MLP and the rule that turns its output into an action.

    Attributes:
        run_id: the run.
        version: the policy version.
        source: ``actor`` (PPO) or ``q_network`` (DQN).
        obs_dim: observation width.
        activation: hidden activation, ``tanh`` or ``relu``.
        layers: (weight [out, in], bias [out]) per layer, the output layer last (float32).
        action_kind: ``discrete`` or ``box``.
        rule: ``argmax``, ``clip`` or ``identity``.
        low: per-dimension lower bounds of a clipped Box action (-inf: unbounded).
        high: per-dimension upper bounds of a clipped Box action (+inf: unbounded).
        preprocess: raw observation -> network input (normalisation, one-hot); None: the identity.
    """

    run_id: str
    version: int
    source: Literal["actor", "q_network"]
    obs_dim: int
    activation: Literal["tanh", "relu"]
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    action_kind: Literal["discrete", "box"]
    rule: Literal["argmax", "clip", "identity"]
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    preprocess: ObsPreprocess | None = None

    @property
    def raw_obs_dim(self) -> int:
        """Width of the raw observation the exported policy takes."""
        return self.obs_dim if self.preprocess is None else self.preprocess.raw_dim

    @property
    def out_dim(self) -> int:
        """Width of the last layer: the number of actions, or the action dimension."""
        return int(self.layers[-1][1].shape[0])

    def tensors(self) -> dict[str, np.ndarray]:
        """The weights under the exported names ``layers.<i>.weight`` / ``layers.<i>.bias``."""
        out: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(self.layers):
            out[f"layers.{i}.weight"], out[f"layers.{i}.bias"] = w, b
        return out

    def spec(self) -> dict[str, Any]:
        """The JSON-ready description of the network and its action rule (see the module doc)."""
        action: dict[str, Any] = {"kind": self.action_kind, "rule": self.rule}
        if self.action_kind == "discrete":
            action.update(n=self.out_dim, dtype="int64")
        else:
            action.update(dim=self.out_dim, dtype="float32")
        if self.rule == "clip" and self.low is not None and self.high is not None:
            # Strict JSON has no infinity: an unbounded side is null.
            action["low"] = [float(v) if np.isfinite(v) else None for v in self.low]
            action["high"] = [float(v) if np.isfinite(v) else None for v in self.high]
        spec: dict[str, Any] = {
            "format": SPEC_FORMAT,
            "run_id": self.run_id,
            "version": self.version,
            "source": self.source,
            "obs_dim": self.obs_dim,
            "activation": self.activation,
            "layers": len(self.layers),
            "hidden": [int(b.shape[0]) for _, b in self.layers[:-1]],
            "observation": {"dtype": "float32", "shape": ["batch", self.raw_obs_dim]},
            "action": action,
        }
        if self.preprocess is not None:
            spec["preprocess"] = self.preprocess.metadata()
        return spec


def _layers(
    tensors: dict[str, np.ndarray], prefix: str, depth: int
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    names = [str(i) for i in range(depth)] + ["out"]
    return tuple(
        (
            np.ascontiguousarray(tensors[f"{prefix}.{n}.weight"], dtype=np.float32),
            np.ascontiguousarray(tensors[f"{prefix}.{n}.bias"], dtype=np.float32),
        )
        for n in names
    )


# (rule, low, high): how a network's output becomes an action (see ExportedNetwork).
ActionRule = tuple[Literal["argmax", "clip", "identity"], np.ndarray | None, np.ndarray | None]


def _greedy_rule() -> ActionRule:
    """The action of a discrete network: the argmax of its output, no bounds."""
    return "argmax", None, None


def _actor_rule(spec: PolicySpec) -> ActionRule:
    """How an actor's output becomes an action: (rule, low, high)."""
    if spec.action_kind != "box":
        return _greedy_rule()
    if spec.action_low is None or spec.action_high is None:
        return "identity", None, None
    # The evaluator clips the mean to the action space (ftg_common.evaluation.run_episodes), and the
    # env wrapper clips every action it steps with: the exported policy takes the same action.
    low = np.asarray(spec.action_low, dtype=np.float32)
    high = np.asarray(spec.action_high, dtype=np.float32)
    return "clip", low, high


def load_network(store: ObjectStore, run_id: str, version: int) -> ExportedNetwork:
    """Read the deterministic policy of ``version`` of run ``run_id`` from its policy file.

    Raises:
        ValueError: the run has no such version.
        CorruptObjectError: the policy file is damaged or is not a policy's.
    """
    key = layout.policy_key(run_id, version)
    try:
        _, meta = store.get_tensors_with_metadata(key)
    except KeyNotFoundError:
        raise ValueError(f"run {run_id!r} has no policy version {version} ({key} is absent)") from None
    if QTABLE_SPEC_METADATA_KEY in meta:
        raise ValueError(
            f"run {run_id!r} is tabular Q-learning: version {version} is a Q-table, not a network to export "
            "as ONNX, TorchScript or safetensors; its MLflow model serves it (docs/qlearning.md)"
        )
    source: Literal["actor", "q_network"]
    action_kind: Literal["discrete", "box"]
    arch: QNetSpec | PolicySpec
    if QNET_SPEC_METADATA_KEY in meta:  # a DQN run: its online Q-network, acted on greedily
        arch, q = read_qnet(store, run_id, version)
        source, layers, action_kind = "q_network", _layers(q, "q", len(arch.net_arch)), "discrete"
        rule, low, high = _greedy_rule()
        pre = ObsPreprocess.build(arch.obs_dim, arch.encoding)
    else:
        f = read_policy_file(store, run_id, version)
        arch, tensors = f.spec, f.weights
        source, layers, action_kind = "actor", _layers(tensors, "pi", len(arch.net_arch)), arch.action_kind
        rule, low, high = _actor_rule(arch)
        pre = ObsPreprocess.build(arch.obs_dim, arch.encoding, f.norm, f.norm_settings)
    return ExportedNetwork(
        run_id=run_id,
        version=version,
        source=source,
        obs_dim=arch.obs_dim,
        activation=arch.activation,
        layers=layers,
        action_kind=action_kind,
        rule=rule,
        low=low,
        high=high,
        # Recorded whenever there are statistics, even those evaluation does not apply (norm_obs off).
        preprocess=None if pre.identity and pre.norm is None else pre,
    )


# --------------------------------------------------------------------------- torch modules


def _mlp(net: ExportedNetwork) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i, (w, b) in enumerate(net.layers):
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        modules.append(linear)
        if i < len(net.layers) - 1:
            modules.append(nn.Tanh() if net.activation == "tanh" else nn.ReLU())
    return nn.Sequential(*modules)


class ObsNormalize(nn.Module):
    """raw obs float32 [B, d] -> clip((obs - mean) / std, -clip, clip) in float64, cast to float32 [B, d].

    ``std`` is sqrt(var + epsilon) computed once in float64, so each row is what
    :func:`ftg_common.normalize.normalize_obs` gives, bit for bit.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, clip: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(np.asarray(mean, dtype=np.float64).copy()))
        self.register_buffer("std", torch.from_numpy(np.asarray(std, dtype=np.float64).copy()))
        self.register_buffer("low", torch.tensor(-clip, dtype=torch.float64))
        self.register_buffer("high", torch.tensor(clip, dtype=torch.float64))
        self.mean: Tensor
        self.std: Tensor
        self.low: Tensor
        self.high: Tensor

    def forward(self, obs: Tensor) -> Tensor:
        """The normalised observations."""
        z = (obs.to(torch.float64) - self.mean) / self.std
        return torch.minimum(torch.maximum(z, self.low), self.high).to(torch.float32)


class OneHot(nn.Module):
    """raw indices float32 [B, raw_dim] -> concatenated one-hots float32 [B, dim] (see ``columns``)."""

    def __init__(self, component: np.ndarray, value: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("component", torch.from_numpy(component.astype(np.int64)))
        self.register_buffer("value", torch.from_numpy(value.astype(np.float32)))
        self.component: Tensor
        self.value: Tensor

    def forward(self, obs: Tensor) -> Tensor:
        """Column j is 1 where raw component ``component[j]`` equals ``value[j]``."""
        return (torch.index_select(obs, 1, self.component) == self.value).to(torch.float32)


def _preprocess_modules(pre: ObsPreprocess | None) -> list[nn.Module]:
    """The evaluator's raw-observation step as torch modules (none for the identity)."""
    if pre is None:
        return []
    modules: list[nn.Module] = []
    if pre.normalizes:
        assert pre.norm is not None and pre.settings is not None
        modules.append(ObsNormalize(pre.norm.obs_rms.mean, pre.std(), pre.settings.clip_obs))
    if pre.encoding is not None:
        modules.append(OneHot(*pre.encoding.columns()))
    return modules


class ArgmaxPolicy(nn.Module):
    """obs float32 [B, obs_dim] -> argmax of the network's output, int64 [B] (first index on ties)."""

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: Tensor) -> Tensor:
        """The greedy action of every observation."""
        return torch.argmax(self.net(obs), dim=-1)


class ClippedMeanPolicy(nn.Module):
    """obs float32 [B, obs_dim] -> the output clipped per dimension to [low, high], float32 [B, d]."""

    def __init__(self, net: nn.Sequential, low: Tensor, high: Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.low: Tensor
        self.high: Tensor

    def forward(self, obs: Tensor) -> Tensor:
        """The clipped mean action of every observation."""
        # max then min, like np.clip(a, low, high); per-dimension tensor bounds (ONNX Clip takes scalars).
        return torch.minimum(torch.maximum(self.net(obs), self.low), self.high)


def build_module(net: ExportedNetwork) -> nn.Module:
    """The deterministic policy as a torch module in eval mode, its parameters frozen.

    It takes raw observations [B, raw_obs_dim]: the preprocessing (if any) runs before the network.
    """
    mlp = nn.Sequential(*_preprocess_modules(net.preprocess), *_mlp(net))
    module: nn.Module
    if net.rule == "argmax":
        module = ArgmaxPolicy(mlp)
    else:
        d = net.out_dim
        low = torch.full((d,), -torch.inf) if net.low is None else torch.from_numpy(net.low.copy())
        high = torch.full((d,), torch.inf) if net.high is None else torch.from_numpy(net.high.copy())
        module = ClippedMeanPolicy(mlp, low, high)
    module.eval()
    module.requires_grad_(False)
    return module


# --------------------------------------------------------------------------- writers


def spec_path(out_path: str | Path) -> Path:
    """Where the JSON spec of a safetensors export goes: ``policy.safetensors`` -> ``policy.json``."""
    out = Path(out_path)
    return out.with_name(out.name + ".json") if out.suffix == ".json" else out.with_suffix(".json")


@contextmanager
def _quiet_torch_export() -> Iterator[None]:
    # The exporters log progress and warn about optional torch extras (torchvision) and their own
    # deprecations; none of it concerns the user of `export`, whose result is checked by tests.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _write_onnx(net: ExportedNetwork, module: nn.Module, out: Path) -> None:
    import onnx

    # Batch 2: a batch of 1 would be specialised to a constant.
    example = (
        torch.zeros(2, net.raw_obs_dim)
        if net.preprocess is None
        else torch.from_numpy(net.preprocess.example(2))
    )
    with _quiet_torch_export():
        torch.onnx.export(
            module,
            (example,),
            str(out),
            dynamo=True,
            external_data=False,  # one self-contained file
            verbose=False,
            input_names=["obs"],
            output_names=["action"],
            dynamic_shapes={"obs": {0: torch.export.Dim("batch", min=1)}},
        )
    model = onnx.load(str(out))
    entry = model.metadata_props.add()
    entry.key, entry.value = _SPEC_KEY, json.dumps(net.spec())
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def _write_torchscript(net: ExportedNetwork, module: nn.Module, out: Path) -> None:
    with _quiet_torch_export():
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(out), _extra_files={_TORCHSCRIPT_SPEC_FILE: json.dumps(net.spec())})


def _write_safetensors(net: ExportedNetwork, out: Path) -> None:
    from safetensors.numpy import save

    spec = json.dumps(net.spec(), indent=2)
    out.write_bytes(save(net.tensors(), metadata={_SPEC_KEY: json.dumps(net.spec())}))
    spec_path(out).write_text(spec + "\n")


def export_policy(store: ObjectStore, run_id: str, version: int, fmt: str, out_path: str | Path) -> Path:
    """Write ``version`` of run ``run_id``'s deterministic policy as ``fmt`` to ``out_path``.

    Args:
        store: the object store holding the run's policy versions.
        run_id: the run.
        version: the policy version (see :func:`final_version` for a run's last one).
        fmt: ``onnx``, ``torchscript`` or ``safetensors`` (which also writes :func:`spec_path`).
        out_path: the file to write; its parent folders are created.

    Returns:
        ``out_path``.

    Raises:
        ValueError: an unknown format, or the run has no such version.
        CorruptObjectError: the stored policy file is damaged.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose one of {', '.join(FORMATS)})")
    net = load_network(store, run_id, version)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        _write_safetensors(net, out)
    elif fmt == "onnx":
        _write_onnx(net, build_module(net), out)
    else:
        _write_torchscript(net, build_module(net), out)
    return out


def final_version(meta: MetaStore, run_id: str) -> int:
    """The last policy version the run committed (what a finished trial's model is).

    Version 0 is the untrained initial policy: a run still at version 0 never finished a version.

    Raises:
        ValueError: no such run, or a run that never finished a version; the message names the run.
    """
    try:
        rec = meta.get_run(run_id)
    except RunNotFoundError:
        raise ValueError(f"no run named {run_id!r} (see `status`)") from None
    version = int(rec.get("version", 0))
    if version < 1:
        raise ValueError(
            f"run {run_id!r} never finished a policy version (status {rec.get('status', '?')!r}, "
            "only the untrained version 0): nothing to export; train it or `resume` it first"
        )
    return version


def export_final_policy(
    store: ObjectStore, meta: MetaStore, run_id: str, fmt: str, out_path: str | Path
) -> tuple[Path, int]:
    """Export the run's last committed version (:func:`final_version`) with :func:`export_policy`.

    Returns:
        (``out_path``, the exported version).
    """
    version = final_version(meta, run_id)
    return export_policy(store, run_id, version, fmt, out_path), version
