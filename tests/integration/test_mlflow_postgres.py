"""MLflow as the cluster runs it: `mlflow server` on a PostgreSQL backend store, a sweep tracking over HTTP.

A fresh database per run on the PostgreSQL at 127.0.0.1:5432 (``FTG_TEST_POSTGRES_URL`` overrides);
artifacts are proxied by the server (``--serve-artifacts``) to a local directory, as manifests/mlflow
proxies them to MinIO. The sweep runs through the CLI; parent/child runs, the registered model and its
``champion`` alias are then read back through the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from benchmarks.reliability import procs

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL_ENV = "FTG_TEST_POSTGRES_URL"
_DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Creating the schema on an empty database (MLflow's migrations) dominates the start-up.
SERVER_START_TIMEOUT_S = 90.0


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """SQLAlchemy URL (driver psycopg, as manifests/mlflow names it) of a new database, dropped after."""
    import psycopg

    admin_url = os.environ.get(POSTGRES_URL_ENV, _DEFAULT_POSTGRES_URL)
    name = f"ftg_mlflow_{uuid.uuid4().hex[:12]}"
    try:
        # autocommit: CREATE/DROP DATABASE refuse to run inside a transaction.
        admin = psycopg.connect(admin_url, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {admin_url} ({exc}). Start it, or set {POSTGRES_URL_ENV}.",
            pytrace=False,
        )
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(admin_url)
        yield urlunsplit(parts._replace(scheme="postgresql+psycopg", path=f"/{name}"))
        # FORCE: the stopped server's pooled connections may not be gone yet.
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def mlflow_server(postgres_database: str, tmp_path: Path) -> Iterator[str]:
    """The tracking URI of an `mlflow server` (this environment's) on ``postgres_database``."""
    port = procs.free_port()
    uri = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "mlflow-server.log"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli),
        "server",
        "--backend-store-uri",
        postgres_database,
        "--serve-artifacts",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with open(log_path, "wb") as log:
        # Its own process group: the server forks workers, and they go with it.
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not procs.answers_http(f"{uri}/health"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"mlflow server did not start:\n{log_path.read_text(errors='replace')[-4000:]}"
                    )
                time.sleep(0.25)
            yield uri
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


SWEEP = {
    "name": "pg",
    "seeds": [0, 1],
    "max_parallel": 2,
    "defaults": {
        "env_id": "CartPole-v1",
        "total_steps": 512,
        "eval_every_steps": 256,
        "eval_episodes": 2,
        "threshold": 475,
    },
    "configs": {
        "tiny": {"n_envs": 4, "n_steps": 64, "batch_size": 128, "n_epochs": 2},
    },
}


def test_sweep_tracks_into_mlflow_server_on_postgresql(mlflow_server: str, tmp_path: Path) -> None:
    sweep = tmp_path / "pg.yaml"
    sweep.write_text(json.dumps(SWEEP))
    env = {
        **procs.scratch_stores_env(tmp_path, tracking=False, workers=1),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"])),
    }
    out = subprocess.run(
        [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py"), "submit", "--config", str(sweep)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    experiment = client.get_experiment_by_name("faastraingym")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("ftg.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1"]
    assert {c.info.status for c in children} == {"FINISHED"} and parent.info.status == "FINISHED"
    for child in children:
        history = client.get_metric_history(child.info.run_id, "eval/mean_return")
        assert [m.step for m in history] == [256, 512]
    # The registry lives in PostgreSQL too; the first sweep's best trial becomes the champion.
    champion = client.get_model_version_by_alias("ftg-pg", "champion")
    assert champion.run_id in {c.info.run_id for c in children}
    assert parent.data.tags["ftg.champion_model"] == "models:/ftg-pg@champion"
    # Artifacts went through the server's proxy, not to a path the client chose.
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"compare.md", "compare.json"}
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
