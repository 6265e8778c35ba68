"""Logging a Q-learning trial's final table to MLflow as a model (:mod:`workflows.qtable_model`).

:func:`workflows.models.log_policy_model` hands a version whose policy file holds a table here, and
registers the logged model the same way as an actor's or a Q-network's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftg_common.store.base import ObjectStore

_CODE = Path(__file__).resolve().with_name("qtable_model.py")


def log_qtable_model(mlflow_run_id: str, store: ObjectStore, run_id: str, version: int) -> Any:
    """Log the table of ``version`` of Q-learning run ``run_id`` into MLflow run ``mlflow_run_id``.

    Args:
        mlflow_run_id: the trial's MLflow run.
        store: object store holding the run's versions.
        run_id: the trial's run id.
        version: the version to log.

    Returns:
        The ``ModelInfo`` (not registered yet).
    """
    import numpy as np

    from ftg_common.policy.qtable import QTABLE_KEY, read_qtable
    from ftg_common.tensorio import encode
    from workflows.models import log_model_from_code
    from workflows.qtable_model import SPEC, TABLE

    spec, table = read_qtable(store, run_id, version)
    # Two rows of the first state, so the signature's batch dimension is inferred as variable.
    first = spec.starts if spec.kind == "index" else spec.low
    example = np.tile(np.asarray(first, dtype=np.float32), (2, 1))
    stamp = {"run_id": run_id, "version": str(version)}
    files: dict[str, tuple[str, bytes | str]] = {
        TABLE: ("table.safetensors", encode({QTABLE_KEY: table}, stamp)),
        SPEC: ("spec.json", json.dumps(spec.model_dump(mode="json"), indent=2)),
    }
    return log_model_from_code(mlflow_run_id, _CODE, files, example=example)
