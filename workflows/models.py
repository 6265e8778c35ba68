"""Logging a trial's final policy to MLflow as a model, registering it, and naming the champion.

The model is the actor as an MLflow pyfunc "model from code" (:mod:`workflows.policy_model`): numpy
forward pass, weights in safetensors, no pickle. Logging it needs neither torch nor ``torch.export``,
which kept ~3 s of imports and tracing at the end of every sweep; ``export`` still writes ONNX or plain
torch for whoever needs those formats.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftg_common.store.base import ObjectStore

if TYPE_CHECKING:
    import numpy as np
    from mlflow.tracking import MlflowClient

MODEL_NAME = "policy"  # the model's name inside its run
_CODE = Path(__file__).resolve().with_name("policy_model.py")
# Trials finishing together register concurrently; MLflow numbers a registered model's versions by
# reading the highest one and inserting the next, which two writers can race on.
_REGISTER_LOCK = threading.Lock()


def _requirements() -> list[str]:
    # Pinned here: without them MLflow infers requirements by loading the model in a subprocess.
    from importlib.metadata import version

    return [f"{dist}=={version(dist)}" for dist in ("mlflow", "numpy", "safetensors")]


def warm_up() -> None:
    """Pay the one-off costs of the first :func:`log_policy_model` in advance.

    About 1 s: MLflow's pyfunc modules, and its scan of the installed distributions when it checks the
    pinned requirements.
    """
    import mlflow.pyfunc  # noqa: F401
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    warn_dependency_requirement_mismatches(_requirements())


def log_policy_model(
    mlflow_run_id: str, store: ObjectStore, run_id: str, version: int, registered_name: str | None
) -> Any:
    """Log ``version`` of run ``run_id``'s policy into MLflow run ``mlflow_run_id``.

    Args:
        mlflow_run_id: the trial's MLflow run.
        store: object store holding the run's policy versions.
        run_id: the trial's run id.
        version: policy version to log (the final one for a finished trial).
        registered_name: register the model under this name (a new version of it); None: log only.

    Returns:
        The ``ModelInfo``; ``registered_model_version`` is set when registered.
    """
    from ftg_common import layout
    from ftg_common.algos.qnet import QNET_SPEC_METADATA_KEY
    from ftg_common.checkpoints import read_policy_file, read_qnet
    from ftg_common.policy.preprocess import ObsPreprocess
    from ftg_common.policy.qtable import QTABLE_SPEC_METADATA_KEY
    from ftg_common.tensorio import encode
    from workflows.policy_model import PREPROCESS, SPEC, WEIGHTS

    _, meta = store.get_tensors_with_metadata(layout.policy_key(run_id, version))
    if QTABLE_SPEC_METADATA_KEY in meta:  # a Q-learning run: its table, a model of its own
        from workflows.qtable_models import log_qtable_model

        return register_logged_model(log_qtable_model(mlflow_run_id, store, run_id, version), registered_name)
    if QNET_SPEC_METADATA_KEY in meta:  # a DQN run: the online Q-network
        qspec, actor = read_qnet(store, run_id, version)
        spec_json = {**qspec.model_dump(mode="json"), "prefix": "q"}
        pre = ObsPreprocess.build(qspec.obs_dim, qspec.encoding)
    else:
        f = read_policy_file(store, run_id, version)
        actor = {k: v for k, v in f.weights.items() if k.startswith("pi.")}
        spec_json = f.spec.model_dump(mode="json")
        pre = ObsPreprocess.build(f.spec.obs_dim, f.spec.encoding, f.norm, f.norm_settings)
    # The model takes raw observations and does the evaluator's normalisation and encoding itself.
    spec_json[PREPROCESS] = pre.metadata()
    stamp = {"run_id": run_id, "version": str(version)}
    files: dict[str, tuple[str, bytes | str]] = {
        WEIGHTS: ("actor.safetensors", encode(actor, stamp)),
        SPEC: ("spec.json", json.dumps(spec_json, indent=2)),
    }
    info = log_model_from_code(
        mlflow_run_id, _CODE, files, example=pre.example(2), metadata={PREPROCESS: pre.metadata()}
    )
    return register_logged_model(info, registered_name)


_CODE_MODELS = threading.Lock()
_code_models_logging = 0


@contextmanager
def _dbutils_restored() -> Iterator[None]:
    """Undo what concurrent loads of models from code can leave in ``sys.modules["dbutils"]``.

    Loading a model from code (which logging does, to check it) puts a ``MockDbutils`` stand-in at
    ``sys.modules["dbutils"]`` and puts back what was there afterwards. Two trials logging at once
    interleave those steps, and the second to finish puts back the first's stand-in: it then stays
    for good, and anything that reads every module's ``__file__`` (hypothesis, debuggers) breaks on
    it. When the last concurrent log ends, a stand-in still there is replaced by what it wraps.
    """
    global _code_models_logging
    with _CODE_MODELS:
        _code_models_logging += 1
    try:
        yield
    finally:
        with _CODE_MODELS:
            _code_models_logging -= 1
            stray = sys.modules.get("dbutils")
            if _code_models_logging == 0 and type(stray).__name__ == "MockDbutils":
                real = vars(stray).get("real_dbutils")
                if real is None:
                    del sys.modules["dbutils"]
                else:
                    sys.modules["dbutils"] = real


def log_model_from_code(
    mlflow_run_id: str,
    code: Path,
    files: dict[str, tuple[str, bytes | str]],
    *,
    example: np.ndarray,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Log ``code`` (a pyfunc "model from code") with its artifacts into MLflow run ``mlflow_run_id``.

    Args:
        mlflow_run_id: the trial's MLflow run.
        code: the model's source file.
        files: artifact name -> (file name, content): bytes written as they are, text as UTF-8.
        example: the input example MLflow infers the signature from (two rows: a variable batch).
        metadata: the model's metadata, if any.

    Returns:
        The ``ModelInfo`` (not registered yet).
    """
    import mlflow

    with tempfile.TemporaryDirectory(prefix="ftg-model-") as tmp:
        artifacts: dict[str, str] = {}
        for name, (file_name, content) in files.items():
            path = Path(tmp) / file_name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            artifacts[name] = str(path)
        # The fluent run stack is per thread, so trials can log their models concurrently.
        with mlflow.start_run(run_id=mlflow_run_id), _dbutils_restored():
            return mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(code),
                artifacts=artifacts,
                input_example=example,
                pip_requirements=_requirements(),
                metadata=metadata,
            )


def register_logged_model(info: Any, registered_name: str | None) -> Any:
    """Register a logged model (``info``: its ``ModelInfo``) as a new version of ``registered_name``.

    Returns:
        ``info``, with ``registered_model_version`` set when registered (None: log only, left unset).
    """
    import mlflow

    if registered_name is None:
        return info
    with _REGISTER_LOCK:
        registered = mlflow.register_model(info.model_uri, registered_name)
    info.registered_model_version = registered.version
    return info


def set_champion(registered_name: str, version: str | int) -> None:
    """Point the registered model's ``champion`` alias at ``version``."""
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias(registered_name, "champion", str(version))


@dataclass(frozen=True)
class Champion:
    """The model version the ``champion`` alias points at, and where its evidence lives.

    Attributes:
        version: the registered model version.
        run_id: the trial's run id (FaaSTrainGym's, not MLflow's).
        sweep_id: the sweep that trained it (None: not recorded).
        config: its configuration's name in that sweep (None: not recorded).
    """

    version: str
    run_id: str
    sweep_id: str | None
    config: str | None


def current_champion(client: MlflowClient, registered_name: str) -> Champion | None:
    """The version holding the ``champion`` alias, or None when there is none (or no such model).

    The sweep and configuration come from the version's tags, else from its MLflow run's tags (versions
    registered before the versions carried them).
    """
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(registered_name, "champion")
    except MlflowException:
        return None
    tags = dict(mv.tags or {})
    if not {"ftg.sweep_id", "ftg.config", "ftg.run_id"} <= tags.keys() and mv.run_id:
        tags = {**client.get_run(mv.run_id).data.tags, **tags}
    return Champion(
        str(mv.version),
        tags.get("ftg.run_id", mv.run_id or "?"),
        tags.get("ftg.sweep_id"),
        tags.get("ftg.config"),
    )


def tag_model_version(
    client: MlflowClient, registered_name: str, version: str | int, tags: dict[str, str]
) -> None:
    """Set ``tags`` on one version of a registered model."""
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, str(version), key, value)
