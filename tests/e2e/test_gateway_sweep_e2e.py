"""End to end through the local elastic gateway: ``submit`` with ``FTG_GATEWAY_URL`` learns the default
sweep's zoo configuration on CartPole-v1, with sync calls and with async calls + callbacks, and the sweep
reports what the runtime spent (billed and idle GB-s, cold starts, FaaS and dedicated-server cost)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.reliability.procs import scratch_stores_env
from tests.e2e.sweep_cli import run_cli, sweep_mlflow_runs
from tests.nats_streams import NATS_URL, delete_stream, new_stream_name
from workflows.gateway.asyncq.jetstream import reachable

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stores(tmp_path: Path) -> dict[str, str]:
    """The environment shared by the gateway (its replicas) and the CLI: the same stores."""
    return {**scratch_stores_env(tmp_path, workers=None), "FTG_GATEWAY_PASSWORD": "e2e-gateway"}


@pytest.fixture
def gateway(stores: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A gateway process (and its replicas) on a free port; its async queue on a stream of its own."""
    stream = new_stream_name()
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
            delete_stream(stream)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_submit_through_the_gateway_learns_the_default_sweep_and_reports_its_cost(
    mode: str, gateway: str, stores: dict[str, str], tmp_path: Path
) -> None:
    env = {**stores, "FTG_GATEWAY_URL": gateway, "FTG_GATEWAY_ASYNC": str(mode == "async").lower()}
    # The default sweep's zoo configuration, one seed, its full budget (it reaches 475 at about 12k of
    # its 100k steps: a wide margin).
    out = run_cli(["submit", "--only", "zoo", "--seeds", "0"], env, tmp_path, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"sweep (gateway {gateway})" in out.stdout

    client, parent, children = sweep_mlflow_runs(env["MLFLOW_TRACKING_URI"])
    (child,) = children
    # Solved as the RL Zoo counts it (an evaluation at 475 or more, within the budget), and still far
    # above an untrained policy at the end: the last return alone depends on the CPU's float rounding.
    history = client.get_metric_history(child.info.run_id, "eval/mean_return")
    assert max(m.value for m in history) >= 475, child.data.metrics
    assert child.data.metrics["steps_to_threshold"] <= 100_000, child.data.metrics
    assert child.data.metrics["final_return"] >= 200, child.data.metrics

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

    cmp = run_cli(["compare", parent.data.tags["ftg.sweep_id"], "--json"], env, tmp_path, timeout=120)
    assert cmp.returncode == 0, cmp.stderr
    (row,) = json.loads(cmp.stdout)["configs"]
    assert row["config"] == "zoo" and row["reached"] == 1
