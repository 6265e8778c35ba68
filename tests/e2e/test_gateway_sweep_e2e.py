"""End to end through the local elastic gateway: ``submit`` with ``FTG_GATEWAY_URL`` learns the default
sweep's zoo configuration on CartPole-v1, with sync calls and with async calls + callbacks, and the sweep
reports what the runtime spent (billed and idle GB-s, cold starts, FaaS and dedicated-server cost)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from workflows.gateway.asyncq.jetstream import reachable

ROOT = Path(__file__).resolve().parents[2]
NATS_URL = "nats://127.0.0.1:4222"


def _delete_stream(name: str) -> None:
    import nats
    import nats.js.errors

    async def delete() -> None:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=1)
        try:
            await nc.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())


@pytest.fixture
def stores(tmp_path: Path) -> dict[str, str]:
    """The environment shared by the gateway (its replicas) and the CLI: the same stores."""
    return {
        **os.environ,
        "FTG_STORE_URL": f"file://{tmp_path}/store",
        "FTG_META_URL": f"sqlite:///{tmp_path}/meta.db",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "FTG_GATEWAY_PASSWORD": "e2e-gateway",
    }


@pytest.fixture
def gateway(stores: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A gateway process (and its replicas) on a free port; its async queue on a stream of its own."""
    stream = f"ftgtest-{uuid.uuid4().hex[:12]}"
    durable = reachable(NATS_URL, 2.0)
    env = {**stores, "FTG_ASYNC_QUEUE": "nats" if durable else "memory", "FTG_ASYNC_STREAM": stream}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflows.gateway.server", "--port", "0"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "gateway.log").open("w"),
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("gateway on http://"), line
        yield line.removeprefix("gateway on ")
    finally:
        proc.send_signal(signal.SIGTERM)  # the gateway stops its replicas on the way out
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if durable:
            _delete_stream(stream)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_submit_through_the_gateway_learns_the_default_sweep_and_reports_its_cost(
    mode: str, gateway: str, stores: dict[str, str], tmp_path: Path
) -> None:
    env = {**stores, "FTG_GATEWAY_URL": gateway, "FTG_GATEWAY_ASYNC": str(mode == "async").lower()}
    cli = [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py")]
    # The default sweep's zoo configuration, one seed, its full budget (it reaches 475 at about 12k of
    # its 100k steps: a wide margin).
    out = subprocess.run(
        [*cli, "submit", "--only", "zoo", "--seeds", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"sweep (gateway {gateway})" in out.stdout

    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    exp = client.get_experiment_by_name("faastraingym")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("ftg.kind") == "sweep"]
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert child.data.metrics["final_return"] >= 475, child.data.metrics
    assert "steps_to_threshold" in child.data.metrics

    m = parent.data.metrics
    # A fresh gateway scales every function from zero: each one's first call is a cold start.
    assert m["sweep.cold_starts"] >= 4
    assert m["sweep.idle_gb_s"] > 0 and m["sweep.billed_gb_s"] == pytest.approx(
        child.data.metrics["cost_gb_s"]
    )
    assert m["sweep.wall_s"] >= child.data.metrics["wall_s"]
    assert m["sweep.faas_usd"] > 0 and m["sweep.dedicated_usd"] > 0
    cost = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "cost.json", str(tmp_path))).read_text()
    )
    assert cost["source"] == f"gateway {gateway}" and cost["cold_starts"] == m["sweep.cold_starts"]
    md = Path(client.download_artifacts(parent.info.run_id, "compare.md", str(tmp_path))).read_text()
    assert "idle GB-s" in md and "cold starts" in md

    cmp = subprocess.run(
        [*cli, "compare", parent.data.tags["ftg.sweep_id"], "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cmp.returncode == 0, cmp.stderr
    (row,) = json.loads(cmp.stdout)["configs"]
    assert row["config"] == "zoo" and row["reached"] == 1
