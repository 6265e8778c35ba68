"""The Hera-built iteration WorkflowTemplate: golden YAML, Argo v4.1.2 schema, key names, bodies, retries."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from ftg_common.schemas import AggregateRequest, CollectRequest, EvalRequest, UpdateRequest
from workflows.engines.compiler import RetrySpec, compile_workflow
from workflows.engines.expr import Expression
from workflows.iteration import (
    EVAL_WHEN,
    GOLDEN_PATH,
    PARAMETERS,
    RETRY_EXPRESSION,
    iteration_manifest,
    iteration_workflow,
    render_yaml,
)

SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "argo-workflows-schema.json"
DEF = "io.argoproj.workflow.v1alpha1."

SAMPLE_PARAMS = {
    "run-id": "cartpole-s0",
    "iteration": "3",
    "iterations": "10",
    "eval-every": "2",
    "gateway": "http://gateway.openfaas:8080",
    "shards": "[0,1]",
    "config-digest": "0123456789abcdef",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
}
SHARD_RESULT = {
    "key": "runs/cartpole-s0/iter/000003/traj/0000.safetensors",
    "carry_key": "runs/cartpole-s0/carry/0000.safetensors",
    "shard": 0,
    "steps": 256,
    "policy_version": 3,
    "episode_returns": [21.0],
    "episode_lengths": [21],
    "seconds": 0.1,
}
BATCH_RESULT = {
    "key": "runs/cartpole-s0/iter/000003/batch.safetensors",
    "batch_size": 512,
    "steps": 512,
    "episodes": 3,
    "mean_return": 20.5,
    "adv_mean": 0.0,
    "adv_std": 1.0,
    "seconds": 0.01,
}
SAMPLE_INPUTS = {
    "shard": "0",
    "shards": json.dumps([SHARD_RESULT, SHARD_RESULT]),
    "batch": json.dumps(BATCH_RESULT),
}


@cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _validator(kind: str) -> Draft202012Validator:
    # The file's top level is a oneOf over every kind; validate against the one definition that applies
    # so an error names the real problem instead of "not valid under any of the given schemas".
    schema = _schema()
    return Draft202012Validator({"$ref": f"#/definitions/{DEF}{kind}", "definitions": schema["definitions"]})


def assert_schema_valid(kind: str, obj: dict[str, Any], *, every_key_declared: bool = False) -> None:
    """``obj`` is a valid Argo ``kind``; with ``every_key_declared``, it has no key the schema lacks."""
    errors = sorted(_validator(kind).iter_errors(obj), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    if every_key_declared:
        assert list(unknown_keys(obj, {"$ref": f"#/definitions/{DEF}{kind}"}, kind)) == []


def assert_golden(rendered: str, path: Path, what: str) -> None:
    """``rendered`` is the golden file ``path`` to the byte (``what`` names the template when not)."""
    assert path.exists(), "run `python -m workflows.iteration --write-golden`"
    assert rendered == path.read_text(), (
        f"{what} changed; review the diff and run `python -m workflows.iteration --write-golden`"
    )


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _schema()["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def unknown_keys(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """Every key the schema does not declare (the schema itself never forbids extra keys)."""
    schema = _resolve(schema)
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            for key, sub in value.items():
                if key not in props:
                    yield f"{path}.{key}"
                else:
                    yield from unknown_keys(sub, props[key], f"{path}.{key}")
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, sub in value.items():
                yield from unknown_keys(sub, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            yield from unknown_keys(sub, schema["items"], f"{path}[{i}]")


def _templates(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in manifest["spec"]["templates"]}


def _substitute(text: str, inputs: dict[str, str]) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        if name.startswith("workflow.parameters."):
            return SAMPLE_PARAMS[name.removeprefix("workflow.parameters.")]
        if name.startswith("inputs.parameters."):
            return inputs[name.removeprefix("inputs.parameters.")]
        raise AssertionError(f"unexpected placeholder {name}")

    return re.sub(r"\{\{(.*?)\}\}", value, text)


# --- golden file and schema -------------------------------------------------------------------------


def test_render_matches_golden_file() -> None:
    assert_golden(render_yaml(), GOLDEN_PATH, "the rendered template")


def test_golden_yaml_is_the_manifest() -> None:
    assert yaml.safe_load(GOLDEN_PATH.read_text()) == iteration_manifest()


def test_template_validates_against_argo_schema() -> None:
    manifest = iteration_manifest()
    assert manifest["kind"] == "WorkflowTemplate"
    assert_schema_valid("WorkflowTemplate", manifest)


def test_iteration_workflow_validates_against_argo_schema() -> None:
    wf = iteration_workflow(SAMPLE_PARAMS)
    assert wf["kind"] == "Workflow"
    assert wf["spec"]["workflowTemplateRef"] == {"name": "ftg-iteration"}
    assert wf["metadata"]["generateName"] == "ftg-cartpole-s0-3-"
    assert {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]} == SAMPLE_PARAMS
    assert_schema_valid("Workflow", wf, every_key_declared=True)


def test_every_key_is_declared_by_the_schema() -> None:
    manifest = iteration_manifest()
    root = {"$ref": f"#/definitions/{DEF}WorkflowTemplate"}
    assert list(unknown_keys(manifest, root, "template")) == []
    # and every HTTP template / DAG task individually, against its own definition
    for tmpl in manifest["spec"]["templates"]:
        assert list(unknown_keys(tmpl, {"$ref": f"#/definitions/{DEF}Template"}, tmpl["name"])) == []
        for task in tmpl.get("dag", {}).get("tasks", []):
            assert list(unknown_keys(task, {"$ref": f"#/definitions/{DEF}DAGTask"}, task["name"])) == []


def test_key_check_catches_what_the_schema_allows() -> None:
    manifest = copy.deepcopy(iteration_manifest())
    http = _templates(manifest)["collect"]["http"]
    http["timeoutSecond"] = http.pop("timeoutSeconds")  # a typo the schema lets through
    _templates(manifest)["iteration"]["dag"]["tasks"][1]["depend"] = "collect"
    assert not list(_validator("WorkflowTemplate").iter_errors(manifest))
    found = list(unknown_keys(manifest, {"$ref": f"#/definitions/{DEF}WorkflowTemplate"}, "t"))
    assert found == ["t.spec.templates[0].http.timeoutSecond", "t.spec.templates[4].dag.tasks[1].depend"]


def test_schema_rejects_integer_retry_limit() -> None:
    manifest = copy.deepcopy(iteration_manifest())
    _templates(manifest)["collect"]["retryStrategy"]["limit"] = 2
    errors = list(_validator("WorkflowTemplate").iter_errors(manifest))
    assert errors, "int-or-string is typed string in the schema"


# --- the HTTP steps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "function", "timeout"),
    [
        ("collect", "rollout-collector", 120),
        ("aggregate", "reward-aggregator", 120),
        ("update", "policy-updater", 300),
        ("evaluate", "policy-evaluator", 300),
    ],
)
def test_http_templates(name: str, function: str, timeout: int) -> None:
    tmpl = _templates(iteration_manifest())[name]
    http = tmpl["http"]
    assert http["url"] == f"{{{{workflow.parameters.gateway}}}}/function/{function}"
    assert http["method"] == "POST"
    assert http["timeoutSeconds"] == timeout
    # The default success check (2xx) is the one whose failure message names the status code, which is
    # what the retry expression reads (see workflows/iteration.py, RETRY_EXPRESSION).
    assert "successCondition" not in http
    assert {h["name"]: h["value"] for h in http["headers"]} == {
        "Content-Type": "application/json",
        "traceparent": "{{workflow.parameters.traceparent}}",
    }
    retry = tmpl["retryStrategy"]
    assert retry == {
        "limit": "10",
        "retryPolicy": "Always",
        "backoff": {"duration": "50ms", "factor": "2", "maxDuration": "10m"},
        "expression": RETRY_EXPRESSION,
    }
    assert isinstance(retry["limit"], str)


def test_every_http_template_is_bounded_and_retried() -> None:
    for tmpl in iteration_manifest()["spec"]["templates"]:
        if "http" in tmpl:
            assert isinstance(tmpl["http"]["timeoutSeconds"], int)
            assert isinstance(tmpl["retryStrategy"]["limit"], str)
            assert tmpl["retryStrategy"]["expression"]


# --- the retry budget -------------------------------------------------------------------------------

P_FAULT = 0.2  # per call, as in the reliability suite (half before the function ran, half after)
STEPS_PER_391_ITERATIONS = 1_900  # 391 x (2 collect + aggregate + update + ~0.2 evaluate), rounded up


def _compiled_retry(name: str) -> RetrySpec:
    retry = compile_workflow(iteration_manifest()).task(name).template.retry
    assert retry is not None
    return retry


@pytest.mark.parametrize("name", ["collect", "aggregate", "update", "evaluate"])
def test_retry_budget_completes_a_391_iteration_run_at_20_percent_faults(name: str) -> None:
    retry = _compiled_retry(name)
    attempts = retry.limit + 1
    p_run_fails = 1 - (1 - P_FAULT**attempts) ** STEPS_PER_391_ITERATIONS
    assert p_run_fails < 1e-4
    # one attempt fewer would not do: the limit is the smallest that meets the target
    assert 1 - (1 - P_FAULT ** (attempts - 1)) ** STEPS_PER_391_ITERATIONS > 1e-4


@pytest.mark.parametrize(("name", "timeout"), [("collect", 120), ("update", 300)])
def test_backoff_schedule_is_exponential_and_bounded_well_under_the_timeout(name: str, timeout: int) -> None:
    retry = _compiled_retry(name)
    assert retry.schedule == pytest.approx([0.05 * 2**k for k in range(10)])
    assert sum(retry.schedule) == pytest.approx(51.15)
    assert sum(retry.schedule) < timeout / 2
    assert retry.max_duration == 600.0 and retry.cap is None


# Messages the Argo agent (workflow/executor/agent.go, v3.3-v4.1.2) leaves on a failed HTTP attempt node.
ARGO_MESSAGES = {
    "received non-2xx response code: 400": False,
    "received non-2xx response code: 404": False,
    "received non-2xx response code: 409": False,
    "received non-2xx response code: 413": False,
    "received non-2xx response code: 408": True,  # request timeout
    "received non-2xx response code: 429": True,  # the of-watchdog's max_inflight
    "received non-2xx response code: 500": True,
    "received non-2xx response code: 502": True,
    "received non-2xx response code: 503": True,
    "received non-2xx response code: 504": True,
    'Post "http://gateway.openfaas:8080/function/policy-updater": dial tcp 10.43.0.12:8080: '
    "connect: connection refused": True,
    'Post "http://gateway.openfaas:8080/function/rollout-collector": context deadline exceeded': True,
    'Post "http://gateway.openfaas:8080/function/rollout-collector": EOF': True,
    "read tcp 10.42.0.7:51234->10.43.0.12:8080: read: connection reset by peer": True,
    "error processing task: agent cannot execute: unknown task type": True,
    "": True,  # Argo v3.5 evaluates the expression while the attempt runs and after it succeeds too
}


@pytest.mark.parametrize(("message", "retried"), list(ARGO_MESSAGES.items()))
def test_retry_expression_retries_all_but_final_4xx(message: str, retried: bool) -> None:
    expression = Expression(RETRY_EXPRESSION, dialect="expr")
    scope = {"lastRetry.message": message, "lastRetry.status": "Failed", "lastRetry.exitCode": "-1"}
    assert expression.evaluate_bool(scope) is retried


# Each step of an iteration and the request model of the function it calls.
STEP_REQUESTS: list[tuple[str, Any]] = [
    ("collect", CollectRequest),
    ("aggregate", AggregateRequest),
    ("update", UpdateRequest),
    ("evaluate", EvalRequest),
]


@pytest.mark.parametrize(("name", "model"), STEP_REQUESTS)
def test_bodies_are_valid_json_requests(name: str, model: Any) -> None:
    tmpl = _templates(iteration_manifest())[name]
    body = json.loads(_substitute(tmpl["http"]["body"], SAMPLE_INPUTS))
    assert body["run_id"] == "cartpole-s0"
    assert body["iteration"] == 3
    model.model_validate(body)  # the function's own request model accepts it


def test_dag_shape() -> None:
    tasks = {t["name"]: t for t in _templates(iteration_manifest())["iteration"]["dag"]["tasks"]}
    assert list(tasks) == ["collect", "aggregate", "update", "evaluate"]
    assert tasks["collect"]["withParam"] == "{{workflow.parameters.shards}}"
    assert tasks["collect"]["arguments"]["parameters"] == [{"name": "shard", "value": "{{item}}"}]
    assert tasks["aggregate"]["depends"] == "collect"
    assert tasks["aggregate"]["arguments"]["parameters"][0]["value"] == "{{tasks.collect.outputs.result}}"
    assert tasks["update"]["depends"] == "aggregate"
    assert tasks["update"]["arguments"]["parameters"][0]["value"] == "{{tasks.aggregate.outputs.result}}"
    assert tasks["evaluate"]["depends"] == "update"
    assert tasks["evaluate"]["when"] == EVAL_WHEN


def test_workflow_parameters() -> None:
    params = iteration_manifest()["spec"]["arguments"]["parameters"]
    assert [p["name"] for p in params] == list(PARAMETERS)
    assert all(isinstance(p.get("value", ""), str) for p in params)


@pytest.mark.parametrize(
    ("iterations", "every", "evaluated"),
    [(5, 2, [1, 3, 4]), (4, 1, [0, 1, 2, 3]), (3, 10, [2]), (6, 3, [2, 5])],
)
def test_evaluate_when_schedule(iterations: int, every: int, evaluated: list[int]) -> None:
    def due(i: int) -> bool:
        text = EVAL_WHEN
        for k, v in {"iteration": i, "eval-every": every, "iterations": iterations}.items():
            text = text.replace(f"{{{{workflow.parameters.{k}}}}}", str(v))
        return Expression(text, bare_words=True).evaluate_bool()

    assert [i for i in range(iterations) if due(i)] == evaluated


def test_iteration_workflow_checks_parameters() -> None:
    with pytest.raises(ValueError, match="missing iteration parameter.*shards"):
        iteration_workflow({k: v for k, v in SAMPLE_PARAMS.items() if k != "shards"})
    with pytest.raises(ValueError, match="unknown iteration parameter.*shard-list"):
        iteration_workflow({**SAMPLE_PARAMS, "shard-list": "[]"})
    with pytest.raises(ValueError, match="must be strings"):
        iteration_workflow({**SAMPLE_PARAMS, "iteration": 3})  # type: ignore[dict-item]
    # defaults may be left out
    wf = iteration_workflow({k: v for k, v in SAMPLE_PARAMS.items() if k not in ("gateway", "traceparent")})
    given = {p["name"] for p in wf["spec"]["arguments"]["parameters"]}
    assert given == set(SAMPLE_PARAMS) - {"gateway", "traceparent"}


def test_namespace_and_name_are_configurable() -> None:
    manifest = iteration_manifest(name="ftg-iteration-v2", namespace="ftg")
    assert manifest["metadata"] == {"name": "ftg-iteration-v2", "namespace": "ftg"}
    wf = iteration_workflow(SAMPLE_PARAMS, template_name="ftg-iteration-v2", namespace="ftg")
    assert wf["spec"]["workflowTemplateRef"] == {"name": "ftg-iteration-v2"}
    assert wf["metadata"]["namespace"] == "ftg"
