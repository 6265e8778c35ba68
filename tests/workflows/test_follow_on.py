"""Follow-on calls: a step sent ahead to the worker running the step it waits for, and the pool's frames.

The DAG must come out exactly as without follow-ons (same nodes, results, retries); what changes is
only where the next call starts.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftg_common.faas import Response
from tests.workflows.test_local_engine import (
    FAKE_MODULES,
    GATEWAY,
    ITERATION_MODULES,
    args,
    http_template,
    task,
    without_process,
    workflow,
)
from workflows.engines import pool_frames as frames
from workflows.engines.invokers import (
    Ahead,
    FollowOnSkipped,
    InProcessInvoker,
    InvocationError,
    PoolInvoker,
    follow_on_body,
)
from workflows.engines.local import LocalEngine, compile_workflow
from workflows.iteration import iteration_manifest

MODULES = {**FAKE_MODULES, **ITERATION_MODULES}
AFTER_FAN_OUT = ["reward-aggregator", "policy-updater", "policy-evaluator"]


class SpyPool(PoolInvoker):
    """The warm pool, recording which functions were submitted and which were sent ahead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submitted: list[str] = []
        self.chained: list[str] = []

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        self.submitted.append(url.rsplit("/", 1)[-1])
        return super().submit(url, method, headers, body, timeout)

    def chain(self, after: cf.Future[Response], call: Ahead) -> cf.Future[Response] | None:
        fut = super().chain(after, call)
        if fut is not None:
            self.chained.append(call.url.rsplit("/", 1)[-1])
        return fut


@pytest.fixture()
def pool() -> Iterator[SpyPool]:
    with SpyPool(3, modules=MODULES, spin_us=300) as inv:
        inv.warmup()
        yield inv


def _iteration(shards: list[int], iteration: int = 1) -> dict[str, str]:
    return {
        "run-id": "test-run",
        "iteration": str(iteration),
        "iterations": "3",
        "eval-every": "2",
        "gateway": GATEWAY,
        "shards": json.dumps(shards),
        "config-digest": "0123456789abcdef",
        "traceparent": "",
    }


def _results(run: Any) -> dict[str, Any]:
    """Every node's phase, attempts and result, whichever process answered."""
    return {
        n.name: (n.phase, n.attempts, without_process(json.loads(n.result) if n.result else None))
        for n in run.nodes
    }


# --- the engine --------------------------------------------------------------------------------------


def test_each_level_after_the_fan_out_starts_on_the_worker_of_the_step_before() -> None:
    # A step is sent ahead while the one it follows runs, so each must run long enough for the engine
    # to get there first: shard 3 answers at once and shard 0 after 0.12 s, the later steps take 0.1 s.
    slow = {**MODULES, **{name: "tests.fakefuncs.slow_echo" for name in AFTER_FAN_OUT}}
    compiled = compile_workflow(iteration_manifest())
    params = _iteration([0, 3])
    with SpyPool(3, modules=slow, spin_us=300) as pool:
        pool.warmup()
        run = LocalEngine(pool, compiled).run(params)
    assert run.phase == "Succeeded", run.message
    # Only the fan-out went through submit; aggregate, update and evaluate were sent ahead and adopted.
    assert pool.submitted == ["rollout-collector"] * 2
    assert pool.chained == AFTER_FAN_OUT
    pids = {json.loads(run.node(step).result or "")["pid"] for step in ("aggregate", "update", "evaluate")}
    assert len(pids) == 1, "the chain after the fan-out stays on one worker"
    # The same DAG as the in-process engine runs it, step by step.
    reference = LocalEngine(InProcessInvoker(slow), compiled).run(params)
    assert _results(run) == _results(reference)
    assert [n.name for n in run.nodes] == [n.name for n in reference.nodes]


def test_with_follow_ons_off_every_step_goes_through_the_engine() -> None:
    with SpyPool(2, modules=MODULES, spin_us=300, follow_ons=False) as off:
        off.warmup()
        run = LocalEngine(off, compile_workflow(iteration_manifest())).run(_iteration([1, 2]))
    assert run.phase == "Succeeded", run.message
    assert off.chained == []
    assert off.submitted == ["rollout-collector"] * 2 + AFTER_FAN_OUT


def test_a_skipped_step_is_not_sent_ahead(pool: SpyPool) -> None:
    run = LocalEngine(pool, compile_workflow(iteration_manifest())).run(_iteration([1, 2], iteration=0))
    assert run.phase == "Succeeded", run.message
    assert run.node("evaluate").phase == "Skipped"  # iteration 0 of 3, every 2: no evaluation
    assert "policy-evaluator" not in pool.chained + pool.submitted


def _chain_of_two(state: Path, success: str | None) -> dict[str, Any]:
    """flaky (fails once, then 200; 0.2 s a call) -> echo of its result; both retried quickly."""
    retry = {"limit": "3", "retryPolicy": "Always", "backoff": {"duration": "1ms", "factor": "1"}}
    first = json.dumps({"state_file": str(state), "fail_times": 1, "sleep": 0.2})
    second = '{"got": {{inputs.parameters.x}}}'
    return workflow(
        [
            task("first", "first"),
            task("second", "second", depends="first", arguments=args(x="{{tasks.first.outputs.result}}")),
        ],
        [
            http_template("first", "flaky", body=first, retry=retry, success=success),
            http_template("second", "echo", body=second, inputs=("x",), retry=retry, success=success),
        ],
    )


def test_a_follow_on_of_a_failed_attempt_does_not_run_and_the_step_runs_once_after_the_retry(
    pool: SpyPool, tmp_path: Path
) -> None:
    run = LocalEngine(pool, compile_workflow(_chain_of_two(tmp_path / "calls", None))).run({})
    assert run.phase == "Succeeded", run.message
    assert run.node("first").attempts == 2 and run.node("second").attempts == 1
    # Sent ahead of both attempts of "first"; the worker skipped the first (a 503), ran the second.
    assert pool.chained == ["echo", "echo"]
    assert pool.submitted == ["flaky", "flaky"]
    got = json.loads(run.node("second").result or "")["echo"]["got"]
    assert got["calls"] == 2, "the step must see the result of the attempt that succeeded"


def test_a_step_after_one_with_a_success_condition_is_not_sent_ahead(pool: SpyPool, tmp_path: Path) -> None:
    manifest = _chain_of_two(tmp_path / "calls", "response.statusCode == 200")
    run = LocalEngine(pool, compile_workflow(manifest)).run({})
    assert run.phase == "Succeeded", run.message
    assert pool.chained == []  # only the engine can evaluate the condition
    assert pool.submitted == ["flaky", "flaky", "echo"]


# --- the pool ----------------------------------------------------------------------------------------


def _sleepy(pool: PoolInvoker, seconds: float) -> cf.Future[Response]:
    return pool.submit(f"{GATEWAY}/function/sleepy", "POST", {}, json.dumps({"sleep": seconds}).encode(), 30)


def test_a_follow_on_runs_on_the_answer_it_follows(pool: SpyPool) -> None:
    first = _sleepy(pool, 0.2)
    parts = [b'{"before": ', b', "again": ', b"}"]
    second = pool.chain(first, Ahead(f"{GATEWAY}/function/echo", {"X-Test": "1"}, parts, compact=False))
    assert second is not None
    answer = first.result(30)
    echoed = second.result(30).json()
    assert echoed["echo"] == {"before": answer.json(), "again": answer.json()}
    assert pool.submitted == ["sleepy"]
    # A follow-on needs a call in flight: after the answer, there is nothing to follow.
    assert pool.chain(first, Ahead(f"{GATEWAY}/function/echo", {}, [b"{}"], compact=False)) is None


def test_a_worker_dying_with_a_follow_on_queued_fails_both_calls() -> None:
    with PoolInvoker(1, modules=MODULES) as single:
        (pid,) = single.warmup()
        doomed = _sleepy(single, 60)
        follow = single.chain(doomed, Ahead(f"{GATEWAY}/function/echo", {}, [b"[", b"]"], compact=True))
        assert follow is not None
        os.kill(pid, signal.SIGKILL)
        for fut in (doomed, follow):
            with pytest.raises(InvocationError, match="died during the call"):
                fut.result(30)
        (fresh,) = single.warmup()
        assert fresh != pid
        assert _sleepy(single, 0).result(30).status == 200


def test_a_nudged_pool_still_answers_each_call_with_its_own_body(pool: SpyPool) -> None:
    for i in range(5):
        pool.nudge()
        answer = pool.submit(f"{GATEWAY}/function/echo", "POST", {}, f'{{"i": {i}}}'.encode(), 30).result(30)
        assert answer.json()["echo"] == {"i": i}


# --- the worker's rule and the frames ----------------------------------------------------------------


def test_a_follow_on_body_needs_a_2xx_answer_and_json_when_compacted() -> None:
    raw = frames.FollowOn("m", {}, [b"[", b"]"], compact=False)
    compact = frames.FollowOn("m", {}, [b"[", b"]"], compact=True)
    assert follow_on_body(raw, Response(200, {}, '{"a": 1}')) == b'[{"a": 1}]'
    assert follow_on_body(compact, Response(201, {}, '{"a": [1, 2]}')) == b'[{"a":[1,2]}]'
    assert follow_on_body(raw, Response(503, {}, '{"a": 1}')) is None
    assert follow_on_body(raw, None) is None  # nothing ran before, or the call before was skipped
    assert follow_on_body(compact, Response(200, {}, "not json")) is None
    assert follow_on_body(raw, Response(200, {}, "not json")) == b"[not json]"


def test_frames_carry_calls_and_answers_unchanged() -> None:
    call = frames.decode_request(frames.encode_request("pkg.mod", b'{"x": "\x00\xff"}', {"a": "b"}))
    assert call == frames.Call("pkg.mod", b'{"x": "\x00\xff"}', {"a": "b"})
    follow = frames.decode_request(frames.encode_follow_on("pkg.mod", {}, [b"{", b"}"], compact=True))
    assert follow == frames.FollowOn("pkg.mod", {}, [b"{", b"}"], True)
    assert frames.decode_request(frames.STOP) is None
    assert frames.decode_request(frames.NUDGE) is frames.NUDGE_REQUEST
    resp = Response(418, {"Content-Type": "text/plain"}, "tea \ud800 \u00e9")
    assert frames.decode_answer(frames.encode_answer(resp)) == resp
    assert frames.decode_answer(frames.encode_answer(Response(200, {}, ""))) == Response(200, {}, "")
    assert frames.decode_answer(frames.encode_ready(4321)) == 4321
    assert frames.decode_answer(frames.SKIPPED) is None


def test_the_json_content_type_is_framed_like_any_header() -> None:
    resp = Response(200, {"Content-Type": "application/json"}, '{"a":1}')
    first = frames.decode_answer(frames.encode_answer(resp))
    assert first == resp
    assert isinstance(first, Response)
    first.headers["X-Extra"] = "1"  # each decoded answer owns its headers
    assert frames.decode_answer(frames.encode_answer(resp)) == resp
    both = Response(200, {"Content-Type": "application/json", "X-Extra": "1"}, "{}")
    assert frames.decode_answer(frames.encode_answer(both)) == both
    call = frames.encode_request("pkg.mod", b"{}", {"Content-Type": "application/json"})
    assert frames.decode_request(call) == frames.Call("pkg.mod", b"{}", {"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "frame",
    [b"Qmod", b"Q\0{}\0body", b"Fxmod\0{}\0a", b"F1mod\0{}", b"Qmod\0[1]\0b", b'Qmod\0{"a": 1}\0b', b"?"],
)
def test_a_malformed_request_frame_is_refused(frame: bytes) -> None:
    with pytest.raises(frames.FrameError):
        frames.decode_request(frame)


@pytest.mark.parametrize(
    "frame", [b"A200", b"Axx\0{}\0b", b"Rpid", b"A200\0nope\0b", b"A200\0{}\0\xff", b"Z"]
)
def test_a_malformed_answer_frame_is_refused(frame: bytes) -> None:
    with pytest.raises(frames.FrameError):
        frames.decode_answer(frame)


def test_what_cannot_be_framed_is_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="module"):
        frames.encode_request("", b"{}", {})
    with pytest.raises(ValueError, match="NUL"):
        frames.encode_follow_on("m", {}, [b"a\0b"], compact=False)
    with pytest.raises(ValueError, match="NUL"):
        frames.encode_follow_on("m", {}, [], compact=False)


def test_a_follow_on_skipped_by_the_worker_fails_its_future(pool: SpyPool, tmp_path: Path) -> None:
    state = tmp_path / "calls"
    body = json.dumps({"state_file": str(state), "fail_times": 1, "sleep": 0.2}).encode()
    first = pool.submit(f"{GATEWAY}/function/flaky", "POST", {}, body, 30)
    follow = pool.chain(first, Ahead(f"{GATEWAY}/function/echo", {}, [b"[", b"]"], compact=False))
    assert follow is not None
    assert first.result(30).status == 503
    with pytest.raises(FollowOnSkipped):
        follow.result(30)
    # The worker is free again and serves the next call.
    assert pool.submit(f"{GATEWAY}/function/echo", "POST", {}, b"{}", 30).result(30).status == 200
