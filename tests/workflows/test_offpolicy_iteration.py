"""The off-policy (DQN) iteration WorkflowTemplate: golden YAML, Argo v4.1.2 schema, DAG and bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.workflows.test_iteration import (
    SAMPLE_INPUTS,
    SAMPLE_PARAMS,
    STEP_REQUESTS,
    _substitute,
    _templates,
    _validator,
    assert_golden,
    assert_schema_valid,
)
from workflows.engines.compiler import compile_workflow
from workflows.iteration import (
    EVAL_WHEN,
    OFF_POLICY_GOLDEN_PATH,
    OFF_POLICY_TEMPLATE_NAME,
    PARAMETERS,
    iteration_manifest,
    iteration_workflow,
    off_policy_manifest,
    render_yaml,
    template_name_for,
)

APPEND_RESULT = {
    "key": "runs/cartpole-s0/replay",
    "iteration": 3,
    "chunks": [6, 7],
    "evicted": [],
    "replay_size": 1024,
    "steps": 512,
    "episodes": 3,
    "mean_return": 20.5,
    "seconds": 0.01,
}
INPUTS = {**SAMPLE_INPUTS, "replay": json.dumps(APPEND_RESULT)}


def test_render_matches_golden_file() -> None:
    assert_golden(render_yaml(off_policy=True), OFF_POLICY_GOLDEN_PATH, "the rendered off-policy template")


def test_golden_yaml_is_the_manifest() -> None:
    assert yaml.safe_load(OFF_POLICY_GOLDEN_PATH.read_text()) == off_policy_manifest()


def test_template_validates_against_argo_schema_and_declares_every_key() -> None:
    manifest = off_policy_manifest()
    assert manifest["kind"] == "WorkflowTemplate"
    assert manifest["metadata"]["name"] == OFF_POLICY_TEMPLATE_NAME
    assert_schema_valid("WorkflowTemplate", manifest, every_key_declared=True)


def test_it_is_its_own_template_beside_the_on_policy_one() -> None:
    on, off = iteration_manifest(), off_policy_manifest()
    assert on["metadata"]["name"] != off["metadata"]["name"]
    assert template_name_for(True) == OFF_POLICY_TEMPLATE_NAME
    # Same steps, functions, retries and parameters; only the update's input differs.
    assert [p["name"] for p in off["spec"]["arguments"]["parameters"]] == list(PARAMETERS)
    update = _templates(off)["update"]
    assert update["inputs"]["parameters"] == [{"name": "replay"}]
    assert _templates(on)["update"]["inputs"]["parameters"] == [{"name": "batch"}]
    for name in ("collect", "aggregate", "evaluate"):
        assert _templates(off)[name] == _templates(on)[name]


def test_dag_shape() -> None:
    tasks = {t["name"]: t for t in _templates(off_policy_manifest())["iteration"]["dag"]["tasks"]}
    assert list(tasks) == ["collect", "aggregate", "update", "evaluate"]
    assert tasks["collect"]["withParam"] == "{{workflow.parameters.shards}}"
    assert tasks["aggregate"]["depends"] == "collect"
    assert tasks["update"]["depends"] == "aggregate"
    assert tasks["update"]["arguments"]["parameters"] == [
        {"name": "replay", "value": "{{tasks.aggregate.outputs.result}}"}
    ]
    assert tasks["evaluate"]["depends"] == "update" and tasks["evaluate"]["when"] == EVAL_WHEN


@pytest.mark.parametrize(("name", "model"), STEP_REQUESTS)
def test_bodies_are_valid_json_requests(name: str, model: Any) -> None:
    tmpl = _templates(off_policy_manifest())[name]
    body = json.loads(_substitute(tmpl["http"]["body"], INPUTS))
    req = model.model_validate(body)
    if name == "update":
        assert req.replay is not None and req.replay.chunks == [6, 7] and req.batch is None


def test_the_embedded_engine_compiles_it() -> None:
    compiled = compile_workflow(off_policy_manifest())
    assert compiled.name == OFF_POLICY_TEMPLATE_NAME


def test_its_iteration_workflow_references_it() -> None:
    wf = iteration_workflow(SAMPLE_PARAMS, template_name=OFF_POLICY_TEMPLATE_NAME)
    assert wf["spec"]["workflowTemplateRef"] == {"name": OFF_POLICY_TEMPLATE_NAME}
    assert not list(_validator("Workflow").iter_errors(wf))
