"""Retries as the iteration template asks for them: which answers are retried, how often, after which wait,
and what ``retryStrategy.expression`` sees. No test waits a real backoff out: hand-made DAGs use the
template's strategy with a 1 ms backoff, and the template's own schedule is checked as computed."""

from __future__ import annotations

import concurrent.futures as cf
import json
from pathlib import Path
from typing import Any

import pytest

from ftg_common.faas import Response
from workflows.engines.base import FunctionCallError, call_function
from workflows.engines.compiler import RetrySpec, compile_workflow
from workflows.engines.invokers import InProcessInvoker, InvocationError
from workflows.engines.local import LocalEngine
from workflows.engines.retry import decide, function_retries, go_float, last_retry_scope
from workflows.iteration import RETRY_LIMIT, iteration_manifest

from .test_local_engine import (
    FAKE,
    FAKE_MODULES,
    GATEWAY,
    ITERATION_MODULES,
    CannedInvoker,
    echo_json,
    http_template,
    iteration_params,
    run,
    task,
    template_retry,
    workflow,
)

ATTEMPTS = RETRY_LIMIT + 1
SERVER_ERROR = "received non-2xx response code: 503"


def _template_spec(function: str = "rollout-collector") -> RetrySpec:
    return function_retries(compile_workflow(iteration_manifest()))[function]


def _one_step(retry: dict[str, Any], function: str = "echo", body: str = "{}", **http: Any) -> dict[str, Any]:
    """One step calling ``function``; like the template's steps, no successCondition unless given."""
    http.setdefault("success", None)
    return workflow([task("t", "t")], [http_template("t", function=function, body=body, retry=retry, **http)])


def _flaky(state: Path, fail_times: int) -> dict[str, Any]:
    body = json.dumps({"state_file": str(state), "fail_times": fail_times})
    return _one_step(template_retry(), function="flaky", body=body)


class Scripted:
    """Answers each call with the next item: a Response, an exception, or None for a call that never ends."""

    def __init__(self, *script: Response | Exception | None) -> None:
        self.script = list(script)
        self.calls = 0

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> Any:
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        fut: cf.Future[Response] = cf.Future()
        if isinstance(item, Exception):
            fut.set_exception(item)
        elif item is not None:
            fut.set_result(item)
        return fut


OK = Response(200, {}, '{"ok": true}')


# --- which answers are retried ----------------------------------------------------------------------


def test_a_4xx_is_attempted_once() -> None:
    modules = {**ITERATION_MODULES, "rollout-collector": f"{FAKE}.bad_request"}
    result = LocalEngine(InProcessInvoker(modules)).run(iteration_params([0, 1]))  # the real template
    assert result.phase == "Failed"
    for name in ("collect(0:0)", "collect(1:1)"):
        node = result.node(name)
        assert (node.phase, node.attempts, node.status_code) == ("Failed", 1, 400)
        assert node.message == (
            "received non-2xx response code: 400; retryStrategy.expression evaluated to false"
        )


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 413, 422])
def test_no_final_4xx_is_retried(code: int) -> None:
    inv = Scripted(Response(code, {}, "{}"), OK)
    result = run(_one_step(template_retry()), inv)
    assert (result.phase, result.node("t").attempts, inv.calls) == ("Failed", 1, 1)


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_408_429_and_5xx_are_retried(code: int) -> None:
    inv = Scripted(Response(code, {}, "{}"), Response(code, {}, "{}"), OK)
    result = run(_one_step(template_retry()), inv)
    assert (result.phase, result.node("t").attempts) == ("Succeeded", 3)


@pytest.mark.parametrize(("fail_times", "phase"), [(RETRY_LIMIT, "Succeeded"), (ATTEMPTS, "Failed")])
def test_a_5xx_is_retried_up_to_the_limit(tmp_path: Path, fail_times: int, phase: str) -> None:
    result = run(_flaky(tmp_path / "calls", fail_times), InProcessInvoker(FAKE_MODULES))
    node = result.node("t")
    assert (result.phase, node.attempts) == (phase, ATTEMPTS)
    assert (tmp_path / "calls").read_text() == "x" * ATTEMPTS  # the function really ran every time
    if phase == "Failed":
        assert node.message == f"{SERVER_ERROR}; no more retries left ({ATTEMPTS} attempts)"


def test_connection_errors_are_retried() -> None:
    refused = InvocationError("POST http://127.0.0.1:9/function/echo failed: ConnectionError: refused")
    reset = InvocationError("POST http://127.0.0.1:9/function/echo failed: ConnectionResetError: reset")
    inv = Scripted(refused, reset, OK)
    result = run(_one_step(template_retry()), inv)
    assert (result.phase, result.node("t").attempts, result.node("t").status_code) == ("Succeeded", 3, 200)


def test_a_timeout_is_retried() -> None:
    inv = Scripted(None, OK)  # the first call never answers; the engine's 1 s timeout ends it
    result = run(_one_step(template_retry(), timeout=1), inv)
    node = result.node("t")
    assert (result.phase, node.attempts, inv.calls) == ("Succeeded", 2, 2)


def test_every_shard_is_retried_on_its_own(tmp_path: Path) -> None:
    body = (
        '{"state_file": "'
        + str(tmp_path)
        + '/{{inputs.parameters.s}}", "fail_times": {{inputs.parameters.s}}}'
    )
    manifest = workflow(
        [
            task(
                "fan",
                "f",
                withItems=[0, 2, 4],
                arguments={"parameters": [{"name": "s", "value": "{{item}}"}]},
            )
        ],
        [
            http_template(
                "f", function="flaky", body=body, inputs=("s",), retry=template_retry(), success=None
            )
        ],
    )
    result = run(manifest, InProcessInvoker(FAKE_MODULES))
    assert result.phase == "Succeeded"
    assert [result.node(f"fan({i}:{s})").attempts for i, s in enumerate([0, 2, 4])] == [1, 3, 5]


# --- what the expression sees -----------------------------------------------------------------------


def test_expression_sees_the_variables_argo_binds_for_an_http_node(tmp_path: Path) -> None:
    retry = {
        "limit": "5",
        "retryPolicy": "Always",
        "backoff": {"duration": "1ms"},
        "expression": (
            "lastRetry.status == 'Failed' and lastRetry.exitCode == '-1'"
            f" and lastRetry.message == '{SERVER_ERROR}' and lastRetry.duration matches '^[0-9]'"
            " and retries != '2'"
        ),
    }
    body = json.dumps({"state_file": str(tmp_path / "calls"), "fail_times": 5})
    result = run(_one_step(retry, function="flaky", body=body), InProcessInvoker(FAKE_MODULES))
    node = result.node("t")
    # retries is "0" after the first attempt, "2" after the third: the expression stops there
    assert (node.phase, node.attempts) == ("Failed", 3)
    assert node.message.endswith("; retryStrategy.expression evaluated to false")


def test_a_success_condition_message_names_no_status_as_on_argo() -> None:
    retry = {**template_retry(), "expression": "!(lastRetry.message matches '503')"}
    manifest = _one_step(retry, success="response.statusCode == 200")
    result = run(manifest, Scripted(Response(503, {}, "{}"), OK))
    node = result.node("t")
    # the expression did not see the status (so it retried); the node still shows it
    assert (result.phase, node.attempts) == ("Succeeded", 2)
    failed = run(manifest, Scripted(Response(503, {}, "{}"), Response(503, {}, "{}")))
    assert failed.node("t").message.startswith(
        "successCondition 'response.statusCode == 200' evaluated false (status 503)"
    )


def test_last_retry_scope_is_strings_only() -> None:
    scope = last_retry_scope(3, "Failed", SERVER_ERROR, 0.25)
    assert scope == {
        "lastRetry.status": "Failed",
        "lastRetry.message": SERVER_ERROR,
        "lastRetry.exitCode": "-1",
        "lastRetry.duration": "0.25",
        "retries": "2",
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.25, "0.25"),
        (2.0, "2"),
        (0.0, "0"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (123456.789, "123456.789"),
        (999999.0, "999999"),
        (1234567.0, "1.234567e+06"),
        (1e21, "1e+21"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-1.5, "-1.5"),
    ],
)
def test_durations_are_formatted_as_go_prints_a_float64(value: float, text: str) -> None:
    assert go_float(value) == text


# --- the template's schedule, computed --------------------------------------------------------------


def test_the_template_retry_schedule_is_decided_per_attempt() -> None:
    spec = _template_spec()
    waits, elapsed = [], 0.0
    for attempt in range(1, ATTEMPTS + 1):
        elapsed += 0.01  # the attempt itself
        verdict = decide(spec, attempt, "Failed", SERVER_ERROR, 0.01, elapsed)
        if isinstance(verdict, str):
            assert attempt == ATTEMPTS and verdict == f"; no more retries left ({ATTEMPTS} attempts)"
            break
        waits.append(verdict)
        elapsed += verdict
    assert waits == pytest.approx([0.05 * 2**k for k in range(RETRY_LIMIT)])
    assert sum(waits) == pytest.approx(51.15)


def test_the_template_stops_retrying_after_max_duration() -> None:
    spec = _template_spec()
    assert decide(spec, 2, "Failed", SERVER_ERROR, 1.0, 601.0) == "; max duration limit exceeded"
    # a wait that would end past the 10 minutes is not started
    assert decide(spec, 9, "Failed", SERVER_ERROR, 1.0, 590.0) == "; backoff would exceed max duration limit"
    assert decide(spec, 9, "Failed", SERVER_ERROR, 1.0, 580.0) == pytest.approx(12.8)


@pytest.mark.parametrize("phase", ["Failed", "Error"])
def test_the_template_retries_failed_and_errored_attempts(phase: str) -> None:
    assert decide(_template_spec(), 1, phase, "error processing task: boom", 0.0, 0.0) == pytest.approx(0.05)


def test_every_function_of_the_template_has_the_same_strategy() -> None:
    specs = function_retries(compile_workflow(iteration_manifest()))
    assert set(specs) == {"rollout-collector", "reward-aggregator", "policy-updater", "policy-evaluator"}
    assert len({(s.limit, s.policy, s.schedule, s.max_duration) for s in specs.values()}) == 1


# --- direct calls (Engine.call) ---------------------------------------------------------------------


def test_direct_calls_retry_a_5xx_with_the_template_backoff() -> None:
    inv = CannedInvoker(lambda url, headers, body: Response(503, {}, '{"error": "busy"}'))
    waits: list[float] = []
    with pytest.raises(FunctionCallError, match="policy-updater answered 503") as err:
        call_function(
            inv, GATEWAY, "policy-updater", {}, retry=_template_spec("policy-updater"), sleep=waits.append
        )
    assert err.value.status == 503
    assert len(inv.calls) == ATTEMPTS
    assert waits == pytest.approx(list(_template_spec("policy-updater").schedule))


def test_direct_calls_retry_connection_errors_and_then_answer() -> None:
    inv = Scripted(InvocationError("refused"), InvocationError("reset"), OK)
    waits: list[float] = []
    answer = call_function(inv, GATEWAY, "policy-updater", {}, retry=_template_spec(), sleep=waits.append)
    assert answer == {"ok": True}
    assert inv.calls == 3
    assert waits == pytest.approx([0.05, 0.1])


def test_direct_calls_do_not_retry_a_4xx() -> None:
    inv = CannedInvoker(lambda url, headers, body: Response(409, {}, '{"error": "version moved"}'))
    engine = LocalEngine(inv)  # the real template: nothing to wait for, a 409 is final
    with pytest.raises(FunctionCallError, match="answered 409"):
        engine.call("policy-updater", {})
    assert len(inv.calls) == 1


def test_direct_calls_without_a_strategy_try_once() -> None:
    inv = Scripted(InvocationError("refused"), OK)
    with pytest.raises(FunctionCallError, match="gave no response: InvocationError: refused"):
        call_function(inv, GATEWAY, "policy-updater", {})
    assert inv.calls == 1


def test_engine_calls_use_their_template_strategy() -> None:
    manifest = _one_step({"limit": "1", "backoff": {"duration": "1ms"}}, function="policy-updater")
    inv = CannedInvoker(echo_json)
    engine = LocalEngine(inv, compile_workflow(manifest))
    assert engine.call("policy-updater", {"a": 1}) == {"a": 1}
    failing = LocalEngine(Scripted(Response(500, {}, "{}")), compile_workflow(manifest))
    with pytest.raises(FunctionCallError, match="answered 500"):
        failing.call("policy-updater", {})
    assert failing.invoker.calls == 2  # type: ignore[attr-defined]
