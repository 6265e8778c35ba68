"""A Q-learning version logged to MLflow and loaded with mlflow.pyfunc answers as its table does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ftg_common import runtime
from ftg_common.checkpoints import write_version
from ftg_common.policy.qtable import QTablePolicy, QTableSpec
from ftg_common.update.qlearning import QTableState, QTableVersion

SPECS = {
    # Blackjack-like: three discrete components, the middle one starting at 1.
    "index": QTableSpec(kind="index", n_actions=2, sizes=[4, 3, 2], starts=[0, 1, 0]),
    "bins": QTableSpec(kind="bins", n_actions=3, sizes=[3, 4], low=[-1.0, 0.0], high=[1.0, 2.0]),
}


def _observations(kind: str) -> np.ndarray:
    if kind == "index":
        grid = np.stack(np.meshgrid(np.arange(4), np.arange(1, 4), np.arange(2), indexing="ij"), axis=-1)
        return grid.reshape(-1, 3).astype(np.float32)
    # Edges, the high edge itself, and values far outside the range (clipped to the edge bins).
    edges = np.array([[-1.0, 0.0], [1.0, 2.0], [-5.0, 9.0], [0.34, 0.5], [0.0, 1.99], [-0.34, 1.0]])
    rng = np.random.default_rng(0)
    return np.concatenate([edges, rng.uniform(-2.0, 3.0, size=(40, 2))]).astype(np.float32)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_the_logged_table_answers_the_q_values_the_evaluator_acts_on(ftg_env: Path, kind: str) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from workflows.models import log_policy_model

    spec = SPECS[kind]
    table = np.random.default_rng(1).normal(size=spec.shape)
    state = QTableState(version=3, iteration=2, total_steps=30, n_updates=30, spec=spec)
    write_version(runtime.store(), "tab", QTableVersion(state, {"q_table": table}))

    mlflow.set_tracking_uri(f"sqlite:///{ftg_env}/tracking.db")
    client = MlflowClient()
    exp = client.create_experiment("tables", artifact_location=(ftg_env / "artifacts").as_uri())
    info = log_policy_model(client.create_run(exp).info.run_id, runtime.store(), "tab", 3, f"ftg-{kind}")
    assert info.registered_model_version is not None
    model = mlflow.pyfunc.load_model(f"models:/ftg-{kind}/{info.registered_model_version}")
    obs = _observations(kind)
    expected = QTablePolicy(spec, table).q_values(obs)
    np.testing.assert_array_equal(np.asarray(model.predict(obs)), expected)
    if kind == "index":
        assert len(set(spec.states(obs).tolist())) == spec.n_states  # every row was looked up
        with pytest.raises(Exception, match="whole numbers"):
            model.predict(np.array([[0.0, 0.0, 0.0]], dtype=np.float32))
