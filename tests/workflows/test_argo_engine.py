"""The cluster path without a cluster: the driver submits each iteration to an Argo-API server,
through Hera's WorkflowsService; requests are checked against Argo's published schema and the
functions run behind a real HTTP gateway."""

from __future__ import annotations

import pytest

from ftg_common import runtime
from ftg_common.config import PPOConfig, RunConfig
from tests.argo_fake import FakeArgo
from tests.workflows.test_iteration import _schema, _validator, unknown_keys
from workflows.driver import RunDriver
from workflows.engines.argo import ArgoEngine, nodes_from_status
from workflows.gateway.server import serve

TOKEN = "s3cret"


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
