"""The embedded engine: Argo semantics on hand-written DAGs and on the real iteration template, and the
invokers (in-process, warm spawn pool, real HTTP)."""

from __future__ import annotations

import concurrent.futures as cf
import copy
import http.server
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftg_common.catalog import UnknownFunctionError
from ftg_common.faas import Response
from workflows.engines.base import FunctionCallError
from workflows.engines.compiler import InvalidWorkflowError, parse_duration
from workflows.engines.invokers import (
    HttpInvoker,
    InProcessInvoker,
    InvocationError,
    PoolInvoker,
    RoutingInvoker,
    function_from_url,
)
from workflows.engines.local import (
    LocalEngine,
    NodeStatus,
    UnsupportedWorkflowError,
    WorkflowParameterError,
    WorkflowRun,
    compile_workflow,
)
from workflows.iteration import RETRY_LIMIT, iteration_manifest, iteration_workflow

# The fake handlers' package, however pytest put this directory on sys.path.
FAKE = "tests.fakefuncs"
FAKE_MODULES = {
    "echo": f"{FAKE}.echo",
    "flaky": f"{FAKE}.flaky",
    "sleepy": f"{FAKE}.sleepy",
    "bad-request": f"{FAKE}.bad_request",
    "raises": f"{FAKE}.raises",
    "missing": f"{FAKE}.does_not_exist",  # a handler not written yet: must not break pool start
}
ITERATION_MODULES = {
    "rollout-collector": f"{FAKE}.collector",
    "reward-aggregator": f"{FAKE}.echo",
    "policy-updater": f"{FAKE}.echo",
    "policy-evaluator": f"{FAKE}.echo",
}
GATEWAY = "local://gateway"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# --- test invokers and manifest builders ------------------------------------------------------------


class CannedInvoker:
    """Answers from a Python function instead of a handler; records every call (optionally on threads)."""

    def __init__(self, respond: Callable[[str, dict[str, str], bytes], Response], threads: int = 0) -> None:
        self.respond = respond
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._pool = cf.ThreadPoolExecutor(threads) if threads else None

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        with self._lock:
            self.calls.append((url, headers, body))
        if self._pool is not None:
            return self._pool.submit(self.respond, url, headers, body)
        fut: cf.Future[Response] = cf.Future()
        try:
            fut.set_result(self.respond(url, headers, body))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def bodies(self, function: str) -> list[Any]:
        return [json.loads(b) for u, _, b in self.calls if u.endswith(f"/function/{function}")]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class ThreadedInProcess:
    """The in-process adapter on a thread pool: concurrent, and a timed-out call really keeps running."""

    def __init__(self, modules: dict[str, str], threads: int = 8) -> None:
        self.inner = InProcessInvoker(modules)
        self.pool = cf.ThreadPoolExecutor(threads)

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        return self.pool.submit(lambda: self.inner.submit(url, method, headers, body, timeout).result())


def echo_json(url: str, headers: dict[str, str], body: bytes) -> Response:
    """Answers with the request body (which must be JSON)."""
    return Response(200, {}, json.dumps(json.loads(body)))


def http_template(
    name: str,
    function: str = "echo",
    body: str = "{}",
    inputs: tuple[str, ...] = (),
    retry: dict[str, Any] | None = None,
    timeout: int | None = 10,
    success: str | None = "response.statusCode == 200",
    **extra: Any,
) -> dict[str, Any]:
    http: dict[str, Any] = {
        "url": f"{{{{workflow.parameters.gateway}}}}/function/{function}",
        "method": "POST",
        "headers": [{"name": "Content-Type", "value": "application/json"}],
        "body": body,
    }
    if timeout is not None:
        http["timeoutSeconds"] = timeout
    if success is not None:
        http["successCondition"] = success
    tmpl: dict[str, Any] = {"name": name, "http": http, **extra}
    if inputs:
        tmpl["inputs"] = {"parameters": [{"name": i} for i in inputs]}
    if retry is not None:
        tmpl["retryStrategy"] = retry
    return tmpl


def workflow(
    tasks: list[dict[str, Any]],
    templates: list[dict[str, Any]],
    params: dict[str, str | None] | None = None,
    **dag_extra: Any,
) -> dict[str, Any]:
    declared = {"gateway": GATEWAY, **(params or {})}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "test-"},
        "spec": {
            "entrypoint": "main",
            "arguments": {
                "parameters": [
                    {"name": k} if v is None else {"name": k, "value": v} for k, v in declared.items()
                ]
            },
            "templates": [{"name": "main", "dag": {"tasks": tasks, **dag_extra}}, *templates],
        },
    }


def task(name: str, template: str, depends: str | None = None, **fields: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": name, "template": template, **fields}
    if depends:
        t["depends"] = depends
    return t


def args(**values: str) -> dict[str, Any]:
    return {"parameters": [{"name": k, "value": v} for k, v in values.items()]}


def run(
    manifest: dict[str, Any],
    invoker: Any,
    params: dict[str, str] | None = None,
    on_node: Callable[[NodeStatus], None] | None = None,
) -> WorkflowRun:
    return LocalEngine(invoker, compile_workflow(manifest)).run(params or {}, on_node=on_node)


def phases(result: WorkflowRun) -> dict[str, str]:
    return {n.name: n.phase for n in result.nodes}


def without_process(value: Any) -> Any:
    """``value`` without the fake functions' process fields (pid, warmed), at any depth."""
    if isinstance(value, dict):
        return {k: without_process(v) for k, v in value.items() if k not in ("pid", "warmed")}
    if isinstance(value, list):
        return [without_process(v) for v in value]
    return value


def iteration_params(
    shards: list[int], iteration: int = 0, iterations: int = 3, every: int = 2
) -> dict[str, str]:
    return {
        "run-id": "test-run",
        "iteration": str(iteration),
        "iterations": str(iterations),
        "eval-every": str(every),
        "gateway": GATEWAY,
        "shards": json.dumps(shards),
        "config-digest": "0123456789abcdef",
        "traceparent": TRACEPARENT,
    }


def fast_retries(manifest: dict[str, Any]) -> dict[str, Any]:
    """The iteration template with a constant 1 ms backoff, so failing paths test quickly.

    Limit, policy and expression stay the template's; the real backoff schedule is checked without
    waiting it out (test_the_template_retry_schedule_is_decided_per_attempt).
    """
    manifest = copy.deepcopy(manifest)
    for tmpl in manifest["spec"]["templates"]:
        if "retryStrategy" in tmpl:
            tmpl["retryStrategy"]["backoff"].update(duration="1ms", factor="1")
    return manifest


def template_retry(fast: bool = True) -> dict[str, Any]:
    """The iteration template's retryStrategy (limit, policy, backoff, expression), for hand-made DAGs."""
    manifest = iteration_manifest()
    if fast:
        manifest = fast_retries(manifest)
    return copy.deepcopy(manifest["spec"]["templates"][0]["retryStrategy"])


ATTEMPTS = RETRY_LIMIT + 1


@pytest.fixture(scope="module")
def pool() -> Iterator[PoolInvoker]:
    with PoolInvoker(3, modules={**FAKE_MODULES, **ITERATION_MODULES}) as inv:
        inv.warmup()
        yield inv


# --- depends, fan-out, fan-in -----------------------------------------------------------------------


def test_depends_orders_tasks_and_passes_results() -> None:
    inv = CannedInvoker(echo_json)
    manifest = workflow(
        [
            task(
                "d",
                "join",
                depends="b && c.Succeeded",
                arguments=args(x="{{tasks.b.outputs.result}}", y="{{tasks.c.outputs.result}}"),
            ),
            task("b", "one", depends="a", arguments=args(x='"b"')),
            task("c", "one", dependencies=["a"], arguments=args(x='"c"')),
            task("a", "one", arguments=args(x='"a"')),
        ],
        [
            http_template("one", body='{"v": {{inputs.parameters.x}}}', inputs=("x",)),
            http_template(
                "join", body='{"b": {{inputs.parameters.x}}, "c": {{inputs.parameters.y}}}', inputs=("x", "y")
            ),
        ],
    )
    result = run(manifest, inv)
    assert result.phase == "Succeeded", result.message
    order = [json.loads(b) for _, _, b in inv.calls]
    assert order[0] == {"v": "a"}
    assert {json.dumps(o) for o in order[1:3]} == {'{"v": "b"}', '{"v": "c"}'}
    assert order[3] == {"b": {"v": "b"}, "c": {"v": "c"}}
    assert result.output_json("d") == {"b": {"v": "b"}, "c": {"v": "c"}}
    assert [n.name for n in result.nodes][0] == "a"


def test_ready_tasks_and_children_run_concurrently() -> None:
    # Each call waits until all six are running: run one after another, the first would time out.
    together = threading.Barrier(6, timeout=30)

    def slow(url: str, headers: dict[str, str], body: bytes) -> Response:
        together.wait()
        return Response(200, {}, "{}")

    inv = CannedInvoker(slow, threads=8)
    manifest = workflow(
        [task("a", "t"), task("b", "t"), task("fan", "t", withItems=[1, 2, 3, 4])],
        [http_template("t")],
    )
    result = run(manifest, inv)
    inv.close()
    assert result.phase == "Succeeded", result.message
    assert len(inv.calls) == 6


def test_with_param_items_and_item_fields() -> None:
    inv = CannedInvoker(echo_json)
    items = [{"a": 1, "b": "x"}, {"a": 2, "b": "y(z)"}]
    manifest = workflow(
        [
            task(
                "fan",
                "t",
                withParam="{{workflow.parameters.items}}",
                arguments=args(a="{{item.a}}", b="{{item.b}}", whole="{{item}}"),
            )
        ],
        [
            http_template(
                "t",
                body='{"a": {{inputs.parameters.a}}, "b": "{{inputs.parameters.b}}", '
                '"whole": {{inputs.parameters.whole}}}',
                inputs=("a", "b", "whole"),
            )
        ],
        params={"items": None},
    )
    result = run(manifest, inv, {"items": json.dumps(items)})
    assert result.phase == "Succeeded"
    assert [n.name for n in result.nodes] == ["fan", "fan(0:a:1,b:x)", "fan(1:a:2,b:yz)"]  # Argo drops ()
    assert result.node("fan").type == "TaskGroup"
    assert result.output_json("fan") == [
        {"a": 1, "b": "x", "whole": items[0]},
        {"a": 2, "b": "y(z)", "whole": items[1]},
    ]


def test_item_values_are_json_serialised_unless_strings() -> None:
    def record(url: str, headers: dict[str, str], body: bytes) -> Response:
        return Response(200, {}, json.dumps(body.decode()))

    inv = CannedInvoker(record)
    manifest = workflow(
        [
            task(
                "t", "t", withItems=[1, "two", {"k": [1, 2]}, [3, 4], True, 1.5], arguments=args(v="{{item}}")
            )
        ],
        [http_template("t", body="{{inputs.parameters.v}}", inputs=("v",))],
    )
    result = run(manifest, inv)
    assert [b.decode() for _, _, b in inv.calls] == ["1", "two", '{"k":[1,2]}', "[3,4]", "true", "1.5"]
    assert [n.name for n in result.nodes[1:]] == [
        "t(0:1)",
        "t(1:two)",
        "t(2:k:[1,2])",
        "t(3:[3,4])",
        "t(4:true)",
        "t(5:1.5)",
    ]


def test_fan_in_keeps_loop_order_when_children_finish_out_of_order() -> None:
    finished = {shard: threading.Event() for shard in range(4)}

    def reverse_order(url: str, headers: dict[str, str], body: bytes) -> Response:
        if b'"shards"' in body:  # the aggregating call
            return echo_json(url, headers, body)
        shard = json.loads(body)["shard"]
        if shard < 3:  # each shard ends after the next one: 3, 2, 1, 0
            assert finished[shard + 1].wait(30)
        done = time.perf_counter()
        finished[shard].set()
        return Response(200, {}, json.dumps({"shard": shard, "done": done}))

    inv = CannedInvoker(reverse_order, threads=8)
    manifest = workflow(
        [
            task("collect", "c", withParam="[0, 1, 2, 3]", arguments=args(shard="{{item}}")),
            task("agg", "a", depends="collect", arguments=args(shards="{{tasks.collect.outputs.result}}")),
        ],
        [
            http_template("c", body='{"shard": {{inputs.parameters.shard}}}', inputs=("shard",)),
            http_template("a", body='{"shards": {{inputs.parameters.shards}}}', inputs=("shards",)),
        ],
    )
    result = run(manifest, inv)
    inv.close()
    assert result.phase == "Succeeded"
    shards = inv.bodies("echo")[-1]["shards"]
    assert [s["shard"] for s in shards] == [0, 1, 2, 3]
    # finished 3, 2, 1, 0
    assert [s["done"] for s in shards] == sorted((s["done"] for s in shards), reverse=True)


def test_failed_child_fails_the_group_and_only_successes_are_aggregated(tmp_path: Path) -> None:
    def fail_two(url: str, headers: dict[str, str], body: bytes) -> Response:
        shard = json.loads(body)["shard"]
        return Response(500 if shard == 2 else 200, {}, json.dumps({"shard": shard}))

    inv = CannedInvoker(fail_two)
    retry = {"limit": "1", "retryPolicy": "Always", "backoff": {"duration": "1ms"}}
    manifest = workflow(
        [
            task("collect", "c", withParam="[0, 1, 2, 3]", arguments=args(shard="{{item}}")),
            task("agg", "a", depends="collect", arguments=args(shards="{{tasks.collect.outputs.result}}")),
            task("after", "a", depends="agg", arguments=args(shards="[]")),
        ],
        [
            http_template("c", body='{"shard": {{inputs.parameters.shard}}}', inputs=("shard",), retry=retry),
            http_template("a", body='{"shards": {{inputs.parameters.shards}}}', inputs=("shards",)),
        ],
    )
    result = run(manifest, inv)
    assert result.phase == "Failed"
    assert phases(result) == {
        "collect": "Failed",
        "collect(0:0)": "Succeeded",
        "collect(1:1)": "Succeeded",
        "collect(2:2)": "Failed",
        "collect(3:3)": "Succeeded",
        "agg": "Omitted",
        "after": "Omitted",
    }
    assert result.node("collect(2:2)").attempts == 2
    assert "collect(2:2)" in result.message and "500" in result.message
    assert len(inv.calls) == 5  # 4 children + 1 retry; the downstream tasks never ran
    assert result.output_json("collect") == [{"shard": 0}, {"shard": 1}, {"shard": 3}]
    assert result.node("agg").duration_s == 0.0


def test_empty_with_param_skips_the_task_and_its_result_is_unresolved() -> None:
    manifest = workflow(
        [
            task("collect", "c", withParam="[]", arguments=args(v="{{item}}")),
            task("agg", "c", depends="collect", arguments=args(v="{{tasks.collect.outputs.result}}")),
        ],
        [http_template("c", body="{{inputs.parameters.v}}", inputs=("v",))],
    )
    result = run(manifest, CannedInvoker(echo_json))
    assert phases(result) == {"collect": "Skipped", "agg": "Error"}
    assert result.node("collect").message == "Skipped, empty params"
    assert "unresolved placeholder '{{tasks.collect.outputs.result}}'" in result.node("agg").message
    assert result.phase == "Error"


def test_with_param_that_is_not_a_json_list_errors() -> None:
    manifest = workflow(
        [task("fan", "c", withParam="{{workflow.parameters.items}}", arguments=args(v="{{item}}"))],
        [http_template("c", body="{{inputs.parameters.v}}", inputs=("v",))],
        params={"items": None},
    )
    result = run(manifest, CannedInvoker(echo_json), {"items": '{"not": "a list"}'})
    assert result.phase == "Error"
    assert result.node("fan").message.startswith("withParam value could not be parsed as a JSON list")


def test_fan_in_of_invalid_json_errors_the_consumer() -> None:
    def text(url: str, headers: dict[str, str], body: bytes) -> Response:
        return Response(200, {}, "plain text")

    manifest = workflow(
        [
            task("fan", "c", withItems=[1, 2], arguments=args(v="{{item}}")),
            task("agg", "c", depends="fan", arguments=args(v="{{tasks.fan.outputs.result}}")),
        ],
        [http_template("c", body="{{inputs.parameters.v}}", inputs=("v",))],
    )
    result = run(manifest, CannedInvoker(text))
    assert phases(result)["fan"] == "Succeeded"
    assert phases(result)["agg"] == "Error"
    assert "invalid JSON" in result.node("agg").message


# --- retries and timeouts ---------------------------------------------------------------------------


def _flaky_manifest(
    state: Path, fail_times: int, limit: Any, policy: str = "Always", backoff: dict[str, Any] | None = None
) -> dict[str, Any]:
    retry: dict[str, Any] = {"limit": limit, "retryPolicy": policy}
    retry["backoff"] = backoff or {"duration": "5ms", "factor": "2"}
    body = json.dumps({"state_file": str(state), "fail_times": fail_times})
    return workflow([task("f", "f")], [http_template("f", function="flaky", body=body, retry=retry)])


def test_retry_until_success_within_limit(tmp_path: Path) -> None:
    result = run(_flaky_manifest(tmp_path / "s", 2, "2"), InProcessInvoker(FAKE_MODULES))
    node = result.node("f")
    assert (result.phase, node.phase, node.attempts) == ("Succeeded", "Succeeded", 3)
    assert json.loads(node.result)["calls"] == 3
    assert node.message == ""


def test_retry_limit_exhausted(tmp_path: Path) -> None:
    result = run(_flaky_manifest(tmp_path / "s", 2, 1), InProcessInvoker(FAKE_MODULES))  # int limit works too
    node = result.node("f")
    assert (result.phase, node.phase, node.attempts, node.status_code) == ("Failed", "Failed", 2, 503)
    assert "no more retries left" in node.message


def test_retry_policy_on_error_does_not_retry_failures(tmp_path: Path) -> None:
    result = run(_flaky_manifest(tmp_path / "s", 2, "5", policy="OnError"), InProcessInvoker(FAKE_MODULES))
    assert result.node("f").attempts == 1
    assert result.node("f").phase == "Failed"


def test_backoff_waits_between_attempts(tmp_path: Path) -> None:
    manifest = _flaky_manifest(tmp_path / "s", 2, "2", backoff={"duration": "50ms", "factor": 2})
    t0 = time.perf_counter()
    result = run(manifest, InProcessInvoker(FAKE_MODULES))
    assert result.phase == "Succeeded"
    assert time.perf_counter() - t0 >= 0.15  # 50 ms, then 100 ms


def test_backoff_max_duration_stops_retrying(tmp_path: Path) -> None:
    manifest = _flaky_manifest(
        tmp_path / "s", 5, "5", backoff={"duration": "500ms", "factor": "2", "maxDuration": "900ms"}
    )
    result = run(manifest, InProcessInvoker(FAKE_MODULES))
    node = result.node("f")
    assert node.phase == "Failed"
    # The 1st retry comes 500 ms in (an attempt takes milliseconds; the budget leaves it 400); the 2nd
    # would wait 1 s more, past the 900 ms budget.
    assert node.attempts == 2
    assert "max duration" in node.message


def test_timeout_fails_the_attempt() -> None:
    inv = ThreadedInProcess(FAKE_MODULES)
    manifest = workflow(
        [task("s", "s")],
        [http_template("s", function="sleepy", body='{"sleep": 3}', timeout=1, retry={"limit": "0"})],
    )
    t0 = time.perf_counter()
    result = run(manifest, inv)
    elapsed = time.perf_counter() - t0
    node = result.node("s")
    assert (result.phase, node.phase, node.attempts) == ("Failed", "Failed", 1)
    assert node.message.startswith("timeout: no response within 1s")
    assert 0.95 < elapsed < 2.5  # cut at the timeout, not at the 3 s answer
    inv.pool.shutdown(wait=False)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("1h30m", 5400.0), ("30", 30.0), (7, 7.0), ("1.5s", 1.5)],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


def test_bad_duration_is_refused() -> None:
    with pytest.raises(InvalidWorkflowError, match="cannot parse '1 sec'"):
        parse_duration("1 sec", "spec.templates[1].retryStrategy.backoff.duration")


# --- when, success conditions -----------------------------------------------------------------------


def test_when_false_skips_and_plain_depends_still_runs() -> None:
    inv = CannedInvoker(echo_json)
    manifest = workflow(
        [
            task("maybe", "t", when="{{workflow.parameters.n}} > 5"),
            task("next", "t", depends="maybe"),
            task("strict", "t", depends="maybe.Succeeded"),
            task("after-skip", "t", depends="maybe.Skipped"),
        ],
        [http_template("t")],
        params={"n": None},
    )
    result = run(manifest, inv, {"n": "3"})
    assert phases(result) == {
        "maybe": "Skipped",
        "next": "Succeeded",
        "strict": "Omitted",
        "after-skip": "Succeeded",
    }
    assert result.node("maybe").message == "when '3 > 5' evaluated false"
    assert result.phase == "Succeeded"  # omitted by a condition, not by a failure
    result = run(manifest, inv, {"n": "7"})
    assert phases(result) == {
        "maybe": "Succeeded",
        "next": "Succeeded",
        "strict": "Succeeded",
        "after-skip": "Omitted",
    }


def test_when_per_child_uses_the_item() -> None:
    inv = CannedInvoker(echo_json)
    manifest = workflow([task("fan", "t", withItems=[1, 2, 3], when="{{item}} != 2")], [http_template("t")])
    result = run(manifest, inv)
    assert phases(result) == {
        "fan": "Succeeded",
        "fan(0:1)": "Succeeded",
        "fan(1:2)": "Skipped",
        "fan(2:3)": "Succeeded",
    }
    assert len(inv.calls) == 2


def test_invalid_when_is_an_error_node() -> None:
    manifest = workflow(
        [task("t", "t", when="{{workflow.parameters.n}} >")], [http_template("t")], params={"n": "1"}
    )
    result = run(manifest, CannedInvoker(echo_json))
    assert result.phase == "Error"
    assert "invalid 'when' expression" in result.node("t").message


def test_success_condition_on_status_codes() -> None:
    manifest = workflow([task("t", "t")], [http_template("t", function="bad-request", retry={"limit": "1"})])
    result = run(manifest, InProcessInvoker(FAKE_MODULES))
    node = result.node("t")
    assert (result.phase, node.phase, node.status_code, node.attempts) == ("Failed", "Failed", 400, 2)
    assert "successCondition 'response.statusCode == 200' evaluated false" in node.message
    # the body is kept for diagnosis
    assert json.loads(node.result) == {"error": "bad input", "field": "shard"}


def test_default_success_is_2xx_and_conditions_can_read_the_body() -> None:
    def created(url: str, headers: dict[str, str], body: bytes) -> Response:
        return Response(201, {}, '{"ok": true}')

    ok = workflow([task("t", "t")], [http_template("t", success=None)])
    assert run(ok, CannedInvoker(created)).phase == "Succeeded"
    on_body = workflow([task("t", "t")], [http_template("t", success="response.body == '{\"ok\": false}'")])
    assert run(on_body, CannedInvoker(created)).phase == "Failed"


def test_handler_exception_is_a_500() -> None:
    result = run(
        workflow([task("t", "t")], [http_template("t", function="raises")]), InProcessInvoker(FAKE_MODULES)
    )
    assert result.node("t").status_code == 500
    assert "handler bug" in result.node("t").result


# --- parameters and substitution --------------------------------------------------------------------


def test_missing_and_unknown_parameters_are_named() -> None:
    compiled = compile_workflow(
        workflow([task("t", "t")], [http_template("t")], params={"a": None, "b": None, "c": "3"})
    )
    engine = LocalEngine(CannedInvoker(echo_json), compiled)
    assert compiled.required_parameters == ("a", "b")
    with pytest.raises(WorkflowParameterError, match="missing required parameter.*: a, b"):
        engine.run({})
    with pytest.raises(WorkflowParameterError, match="unknown parameter.*: typo"):
        engine.run({"a": "1", "b": "2", "typo": "x"})
    with pytest.raises(WorkflowParameterError, match="must be strings: a"):
        engine.run({"a": 1, "b": "2"})  # type: ignore[dict-item]


def test_defaults_and_enums() -> None:
    body = '{"x": "{{inputs.parameters.x}}", "y": "{{inputs.parameters.y}}"}'
    manifest = workflow(
        [task("t", "t", arguments=args(x="{{workflow.parameters.mode}}"))],
        [http_template("t", body=body, inputs=("x",))],
        params={"mode": "fast"},
    )
    manifest["spec"]["templates"][1]["inputs"]["parameters"].append({"name": "y", "default": "dflt"})
    manifest["spec"]["arguments"]["parameters"][1]["enum"] = ["fast", "slow"]
    inv = CannedInvoker(echo_json)
    assert run(manifest, inv).output_json("t") == {"x": "fast", "y": "dflt"}
    assert run(manifest, inv, {"mode": "slow"}).output_json("t") == {"x": "slow", "y": "dflt"}
    with pytest.raises(WorkflowParameterError, match="not one of"):
        run(manifest, inv, {"mode": "medium"})


def test_unresolved_result_of_a_skipped_task_is_an_error() -> None:
    manifest = workflow(
        [
            task("a", "t", when="false"),
            task("b", "u", depends="a", arguments=args(v="{{tasks.a.outputs.result}}")),
        ],
        [http_template("t"), http_template("u", body="{{inputs.parameters.v}}", inputs=("v",))],
    )
    result = run(manifest, CannedInvoker(echo_json))
    assert phases(result) == {"a": "Skipped", "b": "Error"}
    assert result.node("b").message == "unresolved placeholder '{{tasks.a.outputs.result}}' in argument 'v'"


Mutation = Callable[[dict[str, Any]], None]


def _set_task(i: int, **fields: Any) -> Mutation:
    """Set ``fields`` on task ``i`` of the DAG (``templates[0]``)."""
    return lambda m: m["spec"]["templates"][0]["dag"]["tasks"][i].update(fields)


def _set_dag(**fields: Any) -> Mutation:
    """Set ``fields`` on the DAG (``templates[0].dag``)."""
    return lambda m: m["spec"]["templates"][0]["dag"].update(fields)


def _set_template(i: int, **fields: Any) -> Mutation:
    """Set ``fields`` on template ``i`` (0: the DAG, 1: the http template ``t``)."""
    return lambda m: m["spec"]["templates"][i].update(fields)


def _set_http(**fields: Any) -> Mutation:
    """Set ``fields`` on the http template's request (``templates[1].http``)."""
    return lambda m: m["spec"]["templates"][1]["http"].update(fields)


def _two_tasks_changed_by(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Tasks ``a`` -> ``b`` both calling the http template ``t``, changed by ``mutate``."""
    manifest = workflow([task("a", "t"), task("b", "t", depends="a")], [http_template("t")])
    mutate(manifest)
    return manifest


def _retry_strategy(strategy: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A mutation giving the http template (``templates[1]``) this retryStrategy."""
    return _set_template(1, retryStrategy=strategy)


def _retry_expression(expression: str) -> Mutation:
    """Give the http template one retry under ``expression``."""
    return _retry_strategy({"limit": "1", "expression": expression})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            _set_http(body="{{workflow.parameters.nope}}"),
            r"spec\.templates\[1\]\.http\.body: "
            r"'\{\{workflow\.parameters\.nope\}\}' names an undeclared workflow",
        ),
        (_set_http(body="{{inputs.parameters.nope}}"), "names an undeclared input parameter"),
        (_set_task(0, arguments=args(v="{{item}}")), "outside a withParam/withItems task"),
        (_set_task(0, arguments=args(v="{{tasks.b.outputs.result}}")), "'b', which is not an ancestor"),
        (_set_http(body="{{ unterminated"), "unterminated"),
        (_set_task(1, depends="zz"), "unknown task 'zz'"),
        (_set_task(0, depends="b"), "dependency cycle"),
        (_set_task(0, template="nope"), "no template named 'nope'"),
        (_set_template(1, inputs={"parameters": [{"name": "need"}]}), "template 't' needs need"),
    ],
)
def test_invalid_workflows_are_refused_at_compile_time(mutate: Mutation, message: str) -> None:
    with pytest.raises(InvalidWorkflowError, match=message):
        compile_workflow(_two_tasks_changed_by(mutate))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda m: m["spec"]["templates"].append({"name": "c", "container": {"image": "busybox"}}),
            r"spec\.templates\[2\]\.container: container templates are not supported by the local engine",
        ),
        (
            lambda m: m["spec"]["templates"].append(
                {"name": "s", "steps": [[{"name": "x", "template": "t"}]]}
            ),
            r"spec\.templates\[2\]\.steps: steps templates are not supported",
        ),
        (
            lambda m: m["spec"]["templates"].append(
                {"name": "s", "script": {"image": "python", "source": "1"}}
            ),
            r"spec\.templates\[2\]\.script: script templates are not supported",
        ),
        (
            _set_task(0, withSequence={"count": "3"}),
            r"spec\.templates\[0\]\.dag\.tasks\[0\]\.withSequence: withSequence is not supported",
        ),
        (_set_task(0, continueOn={"failed": True}), r"tasks\[0\]\.continueOn: continueOn is not supported"),
        (
            _set_task(0, dependss="x"),
            r"spec\.templates\[0\]\.dag\.tasks\[0\]\.dependss: task key 'dependss' is not supported",
        ),
        (
            _set_http(timeoutSecond=3),
            r"spec\.templates\[1\]\.http\.timeoutSecond: http key 'timeoutSecond' is not supported",
        ),
        (_set_task(1, depends="a || a"), r"tasks\[1\]\.depends: '\|\|', '!' and parentheses"),
        (_set_task(1, depends="a.Failed"), r"task result 'Failed'"),
        (_set_dag(target="a"), r"dag\.target: dag\.target is not supported"),
        (_retry_strategy({"retryPolicy": "Always"}), "retryStrategy without 'limit'"),
        (
            _retry_strategy({"limit": "1", "retryPolicy": "OnTransientError"}),
            "retryPolicy 'OnTransientError' is not supported",
        ),
        (
            _set_template(1, retryStrategy={"limit": "1", "affinity": {}}),
            "retryStrategy.affinity is not supported",
        ),
        (
            _retry_expression("asInt(lastRetry.exitCode) > 1"),
            r"retryStrategy\.expression: function call asInt\(\.\.\.\) is not supported",
        ),
        (_retry_expression("lastRetry.message contains '503'"), "'contains' is not supported"),
        (_retry_expression(r"lastRetry.message matches '\\d'"), "backslash escapes"),
        (_retry_expression("lastRetry.message matches '(?i)error'"), r"'\(\?' groups and flags"),
        (
            _retry_expression("lastRetry.message matches lastRetry.status"),
            "pattern that is not a string literal",
        ),
        (_retry_expression("lastRetry.exitCode + 1 == 2"), r"operator '\+' is not supported"),
        (
            _retry_expression("workflow.status == 'Running'"),
            r"identifier\(s\) workflow\.status \(known: lastRetry\.duration",
        ),
        (
            _retry_expression("'{{workflow.parameters.gateway}}' == ''"),
            "placeholders in retryStrategy.expression",
        ),
        (lambda m: m["spec"].update(parallelism=2), r"spec\.parallelism: spec key"),
        (_set_http(body="{{=asInt(1)}}"), "expression template"),
        (_set_http(body="{{workflow.name}}"), r"variable '\{\{workflow\.name\}\}' is not supported"),
        (_set_template(1, synchronization={"semaphore": {}}), "template key 'synchronization'"),
        (
            _set_http(successCondition="response.headers == 1"),
            r"identifier\(s\) response\.headers are not supported",
        ),
        (_set_task(0, template="main"), "calling the dag template 'main'"),
        (lambda m: m.update(kind="CronWorkflow"), "kind: 'CronWorkflow' is not supported"),
        (_set_template(0, retryStrategy={"limit": "1"}), "template key 'retryStrategy'"),
        (_set_http(insecureSkipVerify=True), "skipping TLS verification"),
    ],
)
def test_unsupported_constructs_are_refused_with_their_path(mutate: Mutation, message: str) -> None:
    with pytest.raises(UnsupportedWorkflowError, match=message):
        compile_workflow(_two_tasks_changed_by(mutate))


# --- failFast, callbacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("fail_fast", [True, False])
def test_fail_fast_stops_new_tasks(fail_fast: bool) -> None:
    manifest = workflow(
        [task("bad", "bad"), task("good", "t"), task("later", "t", depends="good")],
        [http_template("t"), http_template("bad", function="bad-request")],
        failFast=fail_fast,
    )
    result = run(manifest, InProcessInvoker(FAKE_MODULES))
    assert result.phase == "Failed"
    assert phases(result)["bad"] == "Failed"
    assert phases(result)["good"] == "Succeeded"  # already running when bad failed
    assert ("later" in phases(result)) is (not fail_fast)


def test_on_node_sees_every_final_node() -> None:
    seen: list[tuple[str, str]] = []
    manifest = workflow(
        [task("fan", "t", withItems=["x", "y"]), task("skip", "t", depends="fan", when="1 == 2")],
        [http_template("t")],
    )
    result = run(manifest, CannedInvoker(echo_json), on_node=lambda n: seen.append((n.name, n.phase)))
    assert sorted(seen) == sorted((n.name, n.phase) for n in result.nodes)
    assert seen[-1] == ("skip", "Skipped")
    assert all(n.fulfilled for n in result.nodes)


def test_submit_error_is_an_error_node() -> None:
    inv = RoutingInvoker(InProcessInvoker(FAKE_MODULES), HttpInvoker())
    manifest = workflow([task("t", "t")], [http_template("t")], params={"gateway": "ftp://nowhere"})
    result = run(manifest, inv)
    assert result.phase == "Error"
    assert "no invoker for URL 'ftp://nowhere/function/echo'" in result.node("t").message
    inv.close()


# --- the real iteration template --------------------------------------------------------------------


def test_iteration_template_end_to_end_in_process() -> None:
    engine = LocalEngine(InProcessInvoker(ITERATION_MODULES))  # the iteration template by default
    result = engine.run(iteration_params([0, 1, 2], iteration=1, every=2))
    assert result.phase == "Succeeded", result.message
    assert [n.name for n in result.nodes] == [
        "collect",
        "collect(0:0)",
        "collect(1:1)",
        "collect(2:2)",
        "aggregate",
        "update",
        "evaluate",
    ]
    agg = result.output_json("aggregate")
    assert agg["traceparent"] == TRACEPARENT
    assert agg["echo"]["run_id"] == "test-run" and agg["echo"]["iteration"] == 1
    assert [s["shard"] for s in agg["echo"]["shards"]] == [0, 1, 2]
    update = result.output_json("update")
    assert update["echo"]["batch"]["echo"]["shards"] == agg["echo"]["shards"]
    assert result.node("evaluate").phase == "Succeeded"  # (1 + 1) % 2 == 0
    # iteration 0 of 3 with eval-every 2 is not due
    result = engine.run(iteration_params([0], iteration=0, every=2))
    assert result.node("evaluate").phase == "Skipped"
    assert result.node("evaluate").duration_s == 0.0
    assert result.phase == "Succeeded"


def test_iteration_workflow_with_template_ref_runs_locally() -> None:
    wf = iteration_workflow(iteration_params([0, 1], iteration=2, iterations=3))
    compiled = compile_workflow(wf, templates={"ftg-iteration": iteration_manifest()})
    assert compiled.required_parameters == ()
    result = LocalEngine(InProcessInvoker(ITERATION_MODULES), compiled).run({})
    assert result.phase == "Succeeded"
    assert result.node("evaluate").phase == "Succeeded"  # the last iteration always evaluates
    with pytest.raises(InvalidWorkflowError, match="template 'ftg-iteration' not given"):
        compile_workflow(wf)


def test_iteration_failure_excludes_failed_shard_and_stops_downstream() -> None:
    compiled = compile_workflow(fast_retries(iteration_manifest()))
    result = LocalEngine(InProcessInvoker(ITERATION_MODULES), compiled).run(iteration_params([0, 7, 1]))
    assert result.phase == "Failed"
    assert phases(result) == {
        "collect": "Failed",
        "collect(0:0)": "Succeeded",
        "collect(1:7)": "Failed",
        "collect(2:1)": "Succeeded",
        "aggregate": "Omitted",
        "update": "Omitted",
        "evaluate": "Omitted",
    }
    assert result.node("collect(1:7)").attempts == ATTEMPTS  # a 500 is retried up to the limit
    assert [s["shard"] for s in result.output_json("collect")] == [0, 1]
    assert result.message.startswith("collect(1:7):")


def test_iteration_with_non_json_shard_result_errors_aggregate() -> None:
    result = LocalEngine(InProcessInvoker(ITERATION_MODULES)).run(iteration_params([0, 8]))
    assert phases(result)["aggregate"] == "Error"
    assert result.phase == "Error"


def test_iteration_on_the_warm_pool(pool: PoolInvoker) -> None:
    result = LocalEngine(pool).run(iteration_params([0, 1, 2], iteration=2))
    assert result.phase == "Succeeded", result.message
    # shard 0 sleeps longest (0.12 s), shard 2 shortest: they finish 2, 1, 0 but aggregate in loop order
    shards = result.output_json("aggregate")["echo"]["shards"]
    assert [s["shard"] for s in shards] == [0, 1, 2]
    children = [result.node(f"collect({i}:{i})") for i in range(3)]
    # three idle workers: each child ran in one of its own, side by side
    assert len({json.loads(c.result or "")["pid"] for c in children}) == 3, "the children shared a worker"
    assert len({c.attempts for c in children}) == 1
    assert [n.name for n in result.http_nodes()] == [
        "collect(0:0)",
        "collect(1:1)",
        "collect(2:2)",
        "aggregate",
        "update",
        "evaluate",
    ]
    assert result.node("evaluate").phase == "Succeeded"


# --- direct calls (Engine.call) --------------------------------------------------------------------


def test_call_returns_the_json_body_and_passes_headers() -> None:
    engine = LocalEngine(InProcessInvoker(ITERATION_MODULES))
    answer = engine.call("policy-updater", {"mode": "init"}, headers={"traceparent": TRACEPARENT})
    assert answer["echo"] == {"mode": "init"} and answer["traceparent"] == TRACEPARENT
    assert engine.gateway == "local://gateway"


def test_call_refuses_non_200_and_unknown_functions() -> None:
    engine = LocalEngine(
        InProcessInvoker({"policy-updater": f"{FAKE}.bad_request", "rollout-collector": f"{FAKE}.raises"}),
        compile_workflow(fast_retries(iteration_manifest())),
    )
    with pytest.raises(FunctionCallError, match="policy-updater answered 400: .*bad input") as err:
        engine.call("policy-updater", {})
    assert err.value.status == 400
    with pytest.raises(FunctionCallError, match="rollout-collector answered 500: .*handler bug"):
        engine.call("rollout-collector", {})
    with pytest.raises(UnknownFunctionError, match="no such function: 'echo'"):
        engine.call("echo", {})  # only catalog functions can be called directly


def test_call_over_a_dead_gateway_is_a_call_error() -> None:
    engine = LocalEngine(
        RoutingInvoker(InProcessInvoker(), HttpInvoker()),
        compile_workflow(fast_retries(iteration_manifest())),
        gateway="http://127.0.0.1:9/",
    )
    try:
        assert engine.gateway == "http://127.0.0.1:9"
        with pytest.raises(FunctionCallError, match="policy-updater gave no response: Invocation") as err:
            engine.call("policy-updater", {})
        assert err.value.status is None
    finally:
        engine.close()


def test_pool_warmup_starts_every_worker_with_handlers_imported(pool: PoolInvoker) -> None:
    pids = pool.warmup()
    assert len(pids) == 3
    # pre-import errors (the missing module) were logged, not raised; the worker answers a 500 for it
    resp = pool.submit(f"{GATEWAY}/function/missing", "POST", {}, b"{}", 5).result(10)
    assert resp.status == 500 and "ModuleNotFoundError" in resp.body
    assert pool.submit(f"{GATEWAY}/function/raises", "POST", {}, b"{}", 5).result(10).status == 500
    echo = pool.submit(f"{GATEWAY}/function/echo", "POST", {"traceparent": "t"}, b'{"a": 1}', 5).result(10)
    assert echo.json()["echo"] == {"a": 1} and echo.json()["pid"] in pids
    assert echo.json()["warmed"] is True  # the handler's warmup() hook ran at worker start


def test_pool_retries_across_processes(pool: PoolInvoker, tmp_path: Path) -> None:
    result = run(_flaky_manifest(tmp_path / "s", 2, "2"), pool)
    assert (result.phase, result.node("f").attempts) == ("Succeeded", 3)


def test_local_url_parsing_and_unknown_functions() -> None:
    assert function_from_url("local://gateway/function/rollout-collector") == "rollout-collector"
    for bad in (
        "http://gateway/function/x",
        "local://gateway/async-function/x",
        "local://gateway/function/",
        "local://gateway/function/a/b",
    ):
        with pytest.raises(ValueError, match="not a local function URL"):
            function_from_url(bad)
    resp = InProcessInvoker(FAKE_MODULES).submit(f"{GATEWAY}/function/nope", "POST", {}, b"", 1).result()
    assert resp.status == 404 and "function not found: 'nope'" in resp.body


class _GatewayStub(http.server.BaseHTTPRequestHandler):
    """Like an OpenFaaS gateway: POST /function/echo echoes; anything else is 404."""

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/function/echo":
            echo = {"echo": json.loads(body), "traceparent": self.headers.get("traceparent")}
            payload = json.dumps(echo).encode()
            self.send_response(200)
        else:
            payload = b"Cannot find service: " + self.path.encode()
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway_stub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GatewayStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_invoker_against_a_real_server(gateway_stub: str) -> None:
    with HttpInvoker() as http_inv:
        inv = RoutingInvoker(InProcessInvoker(FAKE_MODULES), http_inv)
        manifest = workflow(
            [
                task("fan", "t", withItems=[1, 2, 3], arguments=args(v="{{item}}")),
                task("missing", "m", depends="fan"),
            ],
            [
                http_template("t", body='{"v": {{inputs.parameters.v}}}', inputs=("v",)),
                http_template("m", function="nope", retry={"limit": "0"}),
            ],
        )
        headers = manifest["spec"]["templates"][1]["http"]["headers"]
        headers.append({"name": "traceparent", "value": TRACEPARENT})
        result = run(manifest, inv, {"gateway": gateway_stub})
        assert [r["echo"]["v"] for r in result.output_json("fan")] == [1, 2, 3]
        assert result.output_json("fan")[0]["traceparent"] == TRACEPARENT
        assert result.node("missing").status_code == 404
        assert result.phase == "Failed"


def test_http_connection_error_is_a_failed_attempt() -> None:
    with HttpInvoker() as inv:
        retry = {"limit": "1", "backoff": {"duration": "1ms"}}
        manifest = workflow([task("t", "t")], [http_template("t", retry=retry)])
        result = run(manifest, inv, {"gateway": "http://127.0.0.1:9"})  # discard port: nothing listens
        node = result.node("t")
        assert (node.phase, node.attempts, node.status_code) == ("Failed", 2, None)
        assert "InvocationError" in node.message and "127.0.0.1:9" in node.message


def test_pool_worker_killed_mid_call_fails_that_call_and_is_replaced() -> None:
    with PoolInvoker(2, modules=FAKE_MODULES) as inv:
        pids = inv.warmup()
        slow = inv.submit(f"{GATEWAY}/function/sleepy", "POST", {}, b'{"sleep": 30}', 60)
        victim = next(p for p in pids if _serving(inv, p))
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(InvocationError, match="died during the call"):
            slow.result(30)
        fresh = inv.warmup()
        assert victim not in fresh and len(fresh) == 2
        echo = inv.submit(f"{GATEWAY}/function/echo", "POST", {}, b'{"a": 1}', 10).result(30)
        assert echo.status == 200 and echo.json()["pid"] in fresh


def _serving(inv: PoolInvoker, pid: int) -> bool:
    return any(w.pid == pid and w.call is not None for w in inv._pool)


def test_pool_whose_workers_die_at_start_stops_respawning_and_fails_calls() -> None:
    with PoolInvoker(2, modules={"dies": f"{FAKE}.dies_on_import"}) as inv:
        with pytest.raises(InvocationError, match="exit before they start"):
            inv.warmup(timeout=60)
        call = inv.submit(f"{GATEWAY}/function/dies", "POST", {}, b"{}", 5)
        with pytest.raises(InvocationError, match="exit before they start"):
            call.result(5)
