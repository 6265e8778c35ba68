"""The cluster path without a cluster: the driver submits each iteration to an Argo-API server,
through Hera's WorkflowsService; requests are checked against Argo's published schema and the
functions run behind a real HTTP gateway."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from ftg_common import layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from tests.argo_fake import TERMINATED, VIRTUAL_EPOCH, FakeArgo
from tests.workflows.test_iteration import SAMPLE_PARAMS, _schema, _validator, unknown_keys
from workflows.argo_latency import DEFAULT
from workflows.driver import RunDriver, RunFailed
from workflows.engines.argo import ArgoEngine, ArgoError, nodes_from_status
from workflows.gateway.server import serve

TOKEN = "s3cret"
SMALL = dict(n_envs=4, n_steps=16, shards=2, batch_size=32, n_epochs=2, eval_every_steps=128, eval_episodes=2)


@pytest.fixture
def cluster(ftg_env):
    argo = FakeArgo(TOKEN)
    gateway = serve("127.0.0.1", 0)
    yield argo, f"http://127.0.0.1:{gateway.server_address[1]}"
    gateway.shutdown()
    argo.close()


def _check(kind: str, obj: dict) -> None:
    errors = sorted(_validator(kind).iter_errors(obj), key=str)
    assert not errors, errors[0]
    definition = _schema()["definitions"][f"io.argoproj.workflow.v1alpha1.{kind}"]
    assert not list(unknown_keys(obj, definition, kind))


def _drive(argo: FakeArgo, gateway: str, run_id: str, iterations: int, k: int = 1, **driver: Any) -> Any:
    """Train ``iterations`` small iterations through the Argo API, ``k`` per Workflow."""
    engine = ArgoEngine(argo.url, TOKEN, "ftg", poll_seconds=0.01, gateway=gateway, iterations_per_workflow=k)
    engine.ensure_template()
    cfg = RunConfig(run_id=run_id, seed=3, ppo=PPOConfig(**SMALL, total_steps=64 * iterations))
    try:
        return RunDriver(cfg, engine=engine, store=runtime.store(), meta=runtime.meta(), **driver).drive()
    finally:
        engine.close()


def _submitted(argo: FakeArgo) -> list[dict]:
    return [
        r["body"]["workflow"]
        for r in argo.requests
        if r["method"] == "POST" and r["path"] == "/api/v1/workflows/ftg"
    ]


class _VirtualTime:
    """The engine's clock and sleep in simulated time: a sleep moves the clock, nothing waits."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.now = 0.0
        self.sleeps = 0
        self.interrupt_after = interrupt_after

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.interrupt_after is not None and self.sleeps > self.interrupt_after:
            raise KeyboardInterrupt
        self.now += seconds


def test_driver_trains_through_the_argo_api(cluster) -> None:
    argo, gateway = cluster
    engine = ArgoEngine(argo.url, TOKEN, "ftg", poll_seconds=0.01, gateway=gateway)
    engine.ensure_template()
    ppo = PPOConfig(
        n_envs=4,
        n_steps=16,
        shards=2,
        batch_size=32,
        n_epochs=2,
        total_steps=64 * 4,
        eval_every_steps=128,
        eval_episodes=2,
    )
    cfg = RunConfig(run_id="argo-run", seed=0, ppo=ppo)
    try:
        summary = RunDriver(cfg, engine=engine, store=runtime.store(), meta=runtime.meta()).drive()
    finally:
        engine.close()
    assert summary.steps == 256 and len(summary.evals) == 2
    assert runtime.meta().get_run("argo-run")["version"] == 4
    assert summary.invocations == 4 * 4 + 2  # 2 collects + aggregate + update per iteration, 2 evaluations

    posts = [r for r in argo.requests if r["method"] == "POST"]
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in argo.requests)
    assert posts[0]["path"] == "/api/v1/workflow-templates/ftg"
    _check("WorkflowTemplate", posts[0]["body"]["template"])
    submitted = [r["body"]["workflow"] for r in posts if r["path"] == "/api/v1/workflows/ftg"]
    assert len(submitted) == 4
    for i, wf in enumerate(submitted):
        _check("Workflow", wf)
        assert wf["spec"]["workflowTemplateRef"] == {"name": "ftg-iteration"}
        params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
        assert params["iteration"] == str(i) and params["gateway"] == gateway
        assert params["run-id"] == "argo-run"


def test_template_is_replaced_when_it_exists(cluster) -> None:
    argo, _ = cluster
    engine = ArgoEngine(argo.url, TOKEN, "ftg", poll_seconds=0.01)
    engine.ensure_template()
    engine.ensure_template()
    calls = [(r["method"], r["path"]) for r in argo.requests]
    assert calls == [
        ("POST", "/api/v1/workflow-templates/ftg"),
        ("POST", "/api/v1/workflow-templates/ftg"),
        ("GET", "/api/v1/workflow-templates/ftg/ftg-iteration"),
        ("PUT", "/api/v1/workflow-templates/ftg/ftg-iteration"),
    ]
    assert argo.templates["ftg-iteration"]["metadata"]["resourceVersion"] == "2"


def test_bad_token_is_refused(cluster) -> None:
    from hera.exceptions import Unauthorized

    argo, _ = cluster
    with pytest.raises(Unauthorized):
        ArgoEngine(argo.url, "wrong", "ftg").ensure_template()


def test_node_mapping_folds_retries_and_groups() -> None:
    status = {
        "phase": "Succeeded",
        "nodes": {
            "wf": {"id": "wf", "type": "DAG", "displayName": "wf", "phase": "Succeeded"},
            "g": {
                "id": "g",
                "type": "TaskGroup",
                "displayName": "collect",
                "templateName": "collect",
                "phase": "Succeeded",
                "children": ["r0"],
                "startedAt": "2026-11-25T10:00:00Z",
                "finishedAt": "2026-11-25T10:00:04Z",
            },
            "r0": {
                "id": "r0",
                "type": "Retry",
                "displayName": "collect(0:0)",
                "templateName": "collect",
                "phase": "Succeeded",
                "children": ["a0", "a1"],
                "startedAt": "2026-11-25T10:00:00Z",
                "finishedAt": "2026-11-25T10:00:04Z",
            },
            "a0": {
                "id": "a0",
                "type": "HTTP",
                "displayName": "collect(0:0)(0)",
                "phase": "Failed",
                "startedAt": "2026-11-25T10:00:00Z",
                "finishedAt": "2026-11-25T10:00:01Z",
            },
            "a1": {
                "id": "a1",
                "type": "HTTP",
                "displayName": "collect(0:0)(1)",
                "phase": "Succeeded",
                "startedAt": "2026-11-25T10:00:02Z",
                "finishedAt": "2026-11-25T10:00:04Z",
                "outputs": {"result": '{"shard": 0}'},
            },
            "s": {
                "id": "s",
                "type": "Skipped",
                "displayName": "evaluate",
                "templateName": "evaluate",
                "phase": "Skipped",
                "startedAt": "2026-11-25T10:00:05Z",
                "finishedAt": "2026-11-25T10:00:05Z",
            },
        },
    }
    nodes = {n.name: n for n in nodes_from_status(status)}
    assert set(nodes) == {"collect", "collect(0:0)", "evaluate"}
    child = nodes["collect(0:0)"]
    assert child.type == "HTTP" and child.attempts == 2 and child.result == '{"shard": 0}'
    assert child.duration_s == 4.0 and child.call_s == 3.0  # the 1 s backoff is not billed
    assert nodes["collect"].type == "TaskGroup" and nodes["collect"].children == ["collect(0:0)"]
    assert nodes["evaluate"].type == "Skipped" and nodes["evaluate"].attempts == 0


# --- giving up on a Workflow terminates it ------------------------------------------------------------


def _held_engine(argo: FakeArgo, time: _VirtualTime, k: int = 1) -> ArgoEngine:
    engine = ArgoEngine(
        argo.url,
        TOKEN,
        "ftg",
        poll_seconds=1.0,
        timeout_seconds=5.0,
        clock=time.clock,
        sleep=time.sleep,
        iterations_per_workflow=k,
    )
    engine.ensure_template()
    return engine


def _terminate_requests(argo: FakeArgo) -> list[dict]:
    return [r for r in argo.requests if r["method"] == "PUT" and r["path"].endswith("/terminate")]


def test_a_workflow_still_running_at_the_timeout_is_terminated(ftg_env) -> None:
    argo = FakeArgo(TOKEN, hold=True)
    time = _VirtualTime()
    try:
        engine = _held_engine(argo, time)
        with pytest.raises(ArgoError, match=r"still Running after 5s"):
            engine.run(SAMPLE_PARAMS)
    finally:
        argo.close()
    (name,) = argo.workflows
    (put,) = _terminate_requests(argo)
    # Argo's WorkflowService.TerminateWorkflow: PUT, the name in the path and a WorkflowTerminateRequest
    assert put["path"] == f"/api/v1/workflows/ftg/{name}/terminate"
    assert put["body"] == {"name": name, "namespace": "ftg"}
    assert put["authorization"] == f"Bearer {TOKEN}"
    _check("WorkflowTerminateRequest", put["body"])
    # polled at 0, 1, ..., 6 s of simulated time: past the 5 s timeout at the seventh poll
    gets = [r for r in argo.requests if r["method"] == "GET" and r["path"] == f"/api/v1/workflows/ftg/{name}"]
    assert len(gets) == 7 and time.now == 6.0
    wf = argo.workflows[name]
    assert wf["spec"]["shutdown"] == "Terminate"
    assert wf["status"]["phase"] == "Failed" and wf["status"]["message"] == TERMINATED


@pytest.mark.parametrize("k", [1, 3])
def test_an_interrupted_wait_terminates_the_workflow(ftg_env, k: int) -> None:
    argo = FakeArgo(TOKEN, hold=True)
    try:
        engine = _held_engine(argo, _VirtualTime(interrupt_after=2), k)
        params = [{**SAMPLE_PARAMS, "iteration": str(i)} for i in range(3, 3 + k)]
        with pytest.raises(KeyboardInterrupt):
            list(engine.run_iterations(params))
    finally:
        argo.close()
    (name,) = argo.workflows
    assert argo.terminated == [name]
    assert argo.workflows[name]["status"]["message"] == TERMINATED


def test_a_finished_workflow_is_not_terminated_and_a_late_terminate_is_only_logged(cluster, caplog) -> None:
    argo, gateway = cluster
    summary = _drive(argo, gateway, "argo-done", iterations=2)
    assert summary.steps == 128
    assert argo.terminated == []
    name = next(iter(argo.workflows))
    engine = ArgoEngine(argo.url, TOKEN, "ftg")
    with caplog.at_level(logging.WARNING, logger="workflows.engines.argo"):
        engine.terminate(name)  # Argo refuses to shut down a completed Workflow; the engine goes on
    assert "cannot shutdown a completed workflow" in caplog.text
    assert argo.workflows[name]["status"]["phase"] == "Succeeded"


# --- K iterations per Workflow -------------------------------------------------------------------------


def test_driver_chains_k_iterations_per_workflow(cluster) -> None:
    argo, gateway = cluster
    summary = _drive(argo, gateway, "argo-chain", iterations=4, k=3)
    # every iteration is recorded and evaluated when due (every 2 iterations: after 1 and 3)
    assert summary.steps == 256 and [s for s, _ in summary.evals] == [128, 256]
    assert summary.invocations == 4 * 4 + 2
    store = runtime.store()
    records = [store.get_json(layout.metrics_key("argo-chain", i)) for i in range(4)]
    assert [r["iteration"] for r in records] == [0, 1, 2, 3] and not any(r["recovered"] for r in records)
    assert runtime.meta().get_run("argo-chain")["version"] == 4
    # both templates installed and schema-valid; a chain of 3, then the last iteration on its own
    assert set(argo.templates) == {"ftg-iteration", "ftg-iteration-chain"}
    for template in argo.templates.values():
        _check("WorkflowTemplate", {k: v for k, v in template.items() if k != "status"})
    chain, single = _submitted(argo)
    _check("Workflow", chain)
    _check("Workflow", single)
    calls = chain["spec"]["templates"][0]["dag"]["tasks"]
    assert [c["name"] for c in calls] == ["iteration-0", "iteration-1", "iteration-2"]
    assert single["spec"]["workflowTemplateRef"] == {"name": "ftg-iteration"}
    assert {p["name"]: p["value"] for p in single["spec"]["arguments"]["parameters"]}["iteration"] == "3"
    assert argo.terminated == []


def _final_checkpoint(run_id: str, version: int) -> tuple[bytes, bytes]:
    store = runtime.store()
    return store.get_bytes(layout.ckpt_weights_key(run_id, version)), store.get_bytes(
        layout.ckpt_optim_key(run_id, version)
    )


@pytest.mark.parametrize("committed", [False, True], ids=["died-before-commit", "died-after-commit"])
def test_a_workflow_dying_mid_chain_resumes_exactly(cluster, committed: bool) -> None:
    """The Workflow of iterations 0-2 dies after iteration 0 (with ``committed``, after iteration 1's
    update was committed but before its result reached Argo); resumed, the run ends with the weights of
    an uninterrupted run, byte for byte."""
    straight_argo, gateway = cluster
    _drive(straight_argo, gateway, "argo-straight", iterations=6)

    dying = FakeArgo(TOKEN, die_after=(1, committed))
    try:
        with pytest.raises(
            RunFailed, match="iteration 1 of argo-broken: workflow Failed: stand-in: the Workflow died"
        ):
            _drive(dying, gateway, "argo-broken", iterations=6, k=3)
    finally:
        dying.close()
    assert dying.terminated == []  # it had ended: nothing to stop
    record = runtime.meta().get_run("argo-broken")
    assert record["status"] == "failed" and record["last_iteration"] == (1 if committed else 0)
    assert runtime.store().exists(layout.metrics_key("argo-broken", 0))
    assert not runtime.store().exists(layout.metrics_key("argo-broken", 1))

    healthy = FakeArgo(TOKEN)
    try:
        summary = _drive(healthy, gateway, "argo-broken", iterations=6, k=3)
    finally:
        healthy.close()
    assert runtime.meta().get_run("argo-broken")["status"] == "finished" and summary.steps == 6 * 64
    recovered = runtime.store().get_json(layout.metrics_key("argo-broken", 1))["recovered"]
    assert recovered is committed  # rebuilt from the committed objects, or run again
    first_calls = [c["name"] for c in _submitted(healthy)[0]["spec"]["templates"][0]["dag"]["tasks"]]
    assert first_calls == (
        ["iteration-2", "iteration-3", "iteration-4"]
        if committed
        else ["iteration-1", "iteration-2", "iteration-3"]
    )
    assert _final_checkpoint("argo-broken", 6) == _final_checkpoint("argo-straight", 6)


def test_stopping_mid_chain_keeps_what_the_cluster_committed(cluster) -> None:
    """Stopped after the first iteration of a chain of 3 whose Workflow had already run all three:
    the two unread iterations are rebuilt from the store on resume, and the weights are exact."""
    argo, gateway = cluster
    _drive(argo, gateway, "argo-straight-2", iterations=4)
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        _drive(argo, gateway, "argo-stopped", iterations=4, k=3, stop=stop, on_progress=lambda p: stop.set())
    record = runtime.meta().get_run("argo-stopped")
    assert record["status"] == "interrupted" and record["last_iteration"] == 2
    summary = _drive(argo, gateway, "argo-stopped", iterations=4, k=3)
    assert summary.steps == 256
    recovered = [
        runtime.store().get_json(layout.metrics_key("argo-stopped", i))["recovered"] for i in range(4)
    ]
    assert recovered == [False, True, True, False]
    assert _final_checkpoint("argo-stopped", 4) == _final_checkpoint("argo-straight-2", 4)


def test_the_latency_model_stamps_each_chained_iteration_in_simulated_time(ftg_env) -> None:
    """Default Argo settings: the agent starts at 5 s; each level ends at the first controller
    reconcile (every 10 s) after the agent's next result patch (every 10 s from its start). Iteration 0
    has 3 levels (no evaluation), iteration 1 four: levels start at 5, 20, 30 | 40, 50, 60, 70 and the
    Workflow is done at 80 s."""
    argo = FakeArgo(TOKEN, timing=DEFAULT)
    gateway = serve("127.0.0.1", 0)
    try:
        _drive(argo, f"http://127.0.0.1:{gateway.server_address[1]}", "argo-timed", iterations=2, k=2)
    finally:
        gateway.shutdown()
        argo.close()
    store = runtime.store()
    elapsed = [store.get_json(layout.metrics_key("argo-timed", i))["elapsed_s"] for i in range(2)]
    assert elapsed == [40.0, 40.0]
    assert argo.virtual_now == VIRTUAL_EPOCH + 80.0
