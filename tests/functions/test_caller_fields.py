"""Caller fields checked against the run, bounded parsing, and finite numbers on the wire.

A function refuses (400 for a value no run of this config could hold, 409 for one this run cannot hold
yet) before writing anything; the aggregator reports counts from the stored trajectories; bodies are
bounded in size and depth; NaN and infinities are refused on the way in and never sent on the way out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from ftg_common import faas, layout, runtime
from ftg_common.config import RunConfig
from ftg_common.faas import Event
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import (
    AggregateResult,
    CollectRequest,
    CollectResult,
    EvalResult,
    RunRef,
    UpdateResult,
)
from tests.funcs import freeze_config, iterate, new_run, post

FUNCTIONS = ["rollout-collector", "reward-aggregator", "policy-updater", "policy-evaluator"]
# 2 envs x 8 steps per iteration, 4 iterations.
SMALL = {"n_envs": 2, "n_steps": 8, "shards": 2, "batch_size": 8, "n_epochs": 1, "total_steps": 64}


def _ref(cfg: RunConfig, iteration: int) -> dict[str, Any]:
    return {"run_id": cfg.run_id, "iteration": iteration, "config_digest": cfg.digest()}


def _iteration_objects(cfg: RunConfig) -> list[str]:
    return runtime.store().list(f"{layout.run_prefix(cfg.run_id)}/iter/")


def _refused(resp: faas.Response, status: int, field: str) -> dict[str, Any]:
    assert resp.status == status, resp.body
    assert resp.headers["Content-Type"] == "application/json"
    err: dict[str, Any] = resp.json()
    assert err["field"] == field, err
    return err


# --------------------------------------------------------------------------- iteration range, every function


def _body(function: str, cfg: RunConfig, iteration: int) -> dict[str, Any]:
    ref = _ref(cfg, iteration)
    if function == "rollout-collector":
        return {**ref, "shard": 0}
    if function == "reward-aggregator":
        shard = {
            "key": layout.traj_key(cfg.run_id, iteration, 0),
            "carry_key": layout.carry_key(cfg.run_id, iteration, 0),
            "shard": 0,
            "steps": 8,
            "policy_version": iteration,
            "episode_returns": [],
            "episode_lengths": [],
        }
        return {
            **ref,
            "shards": [shard, {**shard, "shard": 1, "key": layout.traj_key(cfg.run_id, iteration, 1)}],
        }
    if function == "policy-updater":
        batch = {"key": layout.batch_key(cfg.run_id, iteration), "batch_size": 16, "steps": 16}
        batch |= {"episodes": 0, "mean_return": None, "adv_mean": 0.0, "adv_std": 1.0}
        return {**ref, "batch": batch}
    return ref


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("iteration", [4, 999_999])
def test_an_iteration_past_the_runs_last_is_refused_and_nothing_is_written(
    ftg_env: Path, function: str, iteration: int
) -> None:
    cfg = new_run(**SMALL)
    assert cfg.ppo.n_iterations == 4
    before = _iteration_objects(cfg)
    err = _refused(post(function, _body(function, cfg, iteration)), 400, "iteration")
    assert "out of range" in err["error"] and "4 iterations" in err["error"]
    assert _iteration_objects(cfg) == before


# --------------------------------------------------------------------------- policy-evaluator


def test_eval_of_iteration_999999_is_refused_and_no_eval_record_is_written(ftg_env: Path) -> None:
    cfg = new_run(**SMALL)
    iterate(cfg, 0, evaluate=True)
    record = runtime.store().get_bytes(layout.eval_key(cfg.run_id, 0))
    for body in ({**_ref(cfg, 999_999)}, {**_ref(cfg, 999_999), "version": 1_000_000}):
        _refused(post("policy-evaluator", body), 400, "iteration")
    assert not runtime.store().exists(layout.eval_key(cfg.run_id, 999_999))
    assert runtime.store().get_bytes(layout.eval_key(cfg.run_id, 0)) == record


def test_eval_of_a_version_not_committed_yet_is_a_conflict(ftg_env: Path) -> None:
    cfg = new_run(**SMALL)
    iterate(cfg, 0)  # version 1 committed; iteration 1 would evaluate version 2
    err = _refused(post("policy-evaluator", _ref(cfg, 1)), 409, "iteration")
    assert "committed policy version 1" in err["error"] and "needs version 2" in err["error"]
    _refused(post("policy-evaluator", {**_ref(cfg, 1), "version": 2}), 409, "version")
    assert not runtime.store().exists(layout.eval_key(cfg.run_id, 1))


@pytest.mark.parametrize("version", [1, 3])
def test_eval_record_holds_only_the_version_its_iteration_produced(ftg_env: Path, version: int) -> None:
    cfg = new_run(**SMALL)
    iterate(cfg, 0)
    iterate(cfg, 1)  # versions 1 and 2 committed
    err = _refused(post("policy-evaluator", {**_ref(cfg, 1), "version": version}), 400, "version")
    assert "iteration 1 produced (2)" in err["error"]
    assert not runtime.store().exists(layout.eval_key(cfg.run_id, 1))
    ok = post("policy-evaluator", {**_ref(cfg, 1), "version": 2})
    assert ok.status == 200 and ok.json()["version"] == 2
    assert runtime.store().get_json(layout.eval_key(cfg.run_id, 1))["version"] == 2


def test_version_field_is_bounded_by_the_schema(ftg_env: Path) -> None:
    cfg = new_run(**SMALL)
    for version in (0, -1, 1_000_001, 1.5, "x"):
        _refused(post("policy-evaluator", {**_ref(cfg, 0), "version": version}), 400, "version")


# --------------------------------------------------------------------------- rollout-collector


def test_collect_with_a_policy_version_not_committed_is_a_conflict(ftg_env: Path) -> None:
    cfg = new_run(**SMALL)
    err = _refused(post("rollout-collector", {**_ref(cfg, 1), "shard": 0}), 409, "iteration")
    assert "committed policy version 0" in err["error"]
    assert _iteration_objects(cfg) == []
    # Version i may collect iteration i, and an earlier iteration may be collected again.
    iterate(cfg, 0)
    assert post("rollout-collector", {**_ref(cfg, 1), "shard": 0}).status == 200
    assert post("rollout-collector", {**_ref(cfg, 0), "shard": 1}).status == 200


# --------------------------------------------------------------------------- reward-aggregator


def test_aggregator_reports_counts_from_the_stored_trajectories(ftg_env: Path) -> None:
    cfg = new_run(**{**SMALL, "n_envs": 4, "n_steps": 64, "batch_size": 64, "total_steps": 256 * 4})
    ref = _ref(cfg, 0)
    shards = [post("rollout-collector", {**ref, "shard": s}).json() for s in range(2)]
    returns = [r for s in shards for r in s["episode_returns"]]
    assert returns, "64 CartPole steps with the initial policy finish episodes"
    honest = post("reward-aggregator", {**ref, "shards": shards}).json()
    assert honest["steps"] == 4 * 64 and honest["episodes"] == len(returns)
    assert honest["mean_return"] == pytest.approx(np.mean(returns), abs=1e-5)

    lies = {"steps": 123, "policy_version": 7, "episode_returns": [1e6] * 9, "episode_lengths": [1] * 9}
    forged = post("reward-aggregator", {**ref, "shards": [{**s, **lies} for s in shards]})
    assert forged.status == 200, forged.body
    assert {k: v for k, v in forged.json().items() if k != "seconds"} == {
        k: v for k, v in honest.items() if k != "seconds"
    }


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("steps", -5, "shards.0.steps"),
        ("episode_lengths", [-1], "shards.0.episode_lengths.0"),
        ("seconds", -1.0, "shards.0.seconds"),
        ("shard", -1, "shards.0.shard"),
        ("key", "k" * 2000, "shards.0.key"),
    ],
)
def test_negative_counts_and_oversized_keys_are_400s(
    ftg_env: Path, field: str, value: Any, where: str
) -> None:
    cfg = new_run(**SMALL)
    body = _body("reward-aggregator", cfg, 0)
    body["shards"][0][field] = value
    _refused(post("reward-aggregator", body), 400, where)


def test_aggregating_an_iteration_before_its_policy_is_committed_is_a_conflict(ftg_env: Path) -> None:
    cfg = new_run(**SMALL)
    _refused(post("reward-aggregator", _body("reward-aggregator", cfg, 1)), 409, "iteration")
    assert _iteration_objects(cfg) == []


def test_aggregator_refuses_a_trajectory_another_version_collected(ftg_env: Path) -> None:
    cfg = new_run(**SMALL)
    ref = _ref(cfg, 0)
    shards = [post("rollout-collector", {**ref, "shard": s}).json() for s in range(2)]
    store = runtime.store()
    arrays, meta = store.get_tensors_with_metadata(shards[1]["key"])
    store.put_tensors(shards[1]["key"], arrays, metadata={**meta, "policy_version": "3"})
    err = _refused(post("reward-aggregator", {**ref, "shards": shards}), 409, "shards")
    assert "policy version '3'" in err["error"]
    # A trajectory without its episode record (an older collector's) is refused the same way.
    store.put_tensors(
        shards[1]["key"], {k: v for k, v in arrays.items() if not k.startswith("episode_")}, meta
    )
    err = _refused(post("reward-aggregator", {**ref, "shards": shards}), 409, "shards")
    assert "episode record" in err["error"]
    assert not store.exists(layout.batch_key(cfg.run_id, 0))


# --------------------------------------------------------------------------- policy-updater


def test_updater_refuses_iteration_999999_without_writing(ftg_env: Path) -> None:
    cfg = new_run(**SMALL)
    before = runtime.store().list(layout.run_prefix(cfg.run_id))
    _refused(post("policy-updater", _body("policy-updater", cfg, 999_999)), 400, "iteration")
    _refused(post("policy-updater", {**_ref(cfg, 999_999), "mode": "init"}), 400, "iteration")
    assert runtime.store().list(layout.run_prefix(cfg.run_id)) == before
    assert runtime.meta().get_run(cfg.run_id)["version"] == 0


# --------------------------------------------------------------------------- numbers and bounded parsing


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_400s(ftg_env: Path, function: str, literal: str) -> None:
    cfg = freeze_config(**SMALL)
    body = json.dumps({**_body(function, cfg, 0), "iteration": "@"}).replace('"@"', literal)
    resp = post(function, body.encode())
    assert resp.status == 400 and f"{literal} is not a JSON number" in resp.json()["error"]


@pytest.mark.parametrize(
    "text",
    [
        '{"run_id": "r-1", "iteration": 3, "config_digest": "0123456789abcdef", "shard": 2}',
        # escapes, odd whitespace, a repeated field (the last one counts, as in json.loads)
        '\t{ "run_id":"\\u0072-1" ,\n"iteration":3,"config_digest":"0123456789abcdef",'
        '"shard":7,"shard":2}\r\n',
        '{"run_id": "r-1", "iteration": 3.0, "config_digest": "0123456789abcdef", "shard": "2"}',
    ],
)
def test_a_valid_body_parses_as_json_loads_then_the_model_would(text: str) -> None:
    # The fast path (pydantic's JSON parser) must read exactly what the strict path reads.
    body = text.encode()
    parsed = faas._parse(body, CollectRequest)
    assert parsed == CollectRequest.model_validate(json.loads(body))
    assert parsed.run_id == "r-1" and parsed.shard == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"run_id": "r-1", "iteration": NaN}', "NaN is not a JSON number"),
        (b'{"run_id": "r-1"} trailing', "not valid JSON"),
        (b"\xef\xbb\xbf[1]", "must be a JSON object"),
        (b'{"run_id": "r\\ud800"}', "invalid request: run_id: Input should be a valid string"),
        (b'{"iteration": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_a_refused_body_gets_the_strict_parsers_message(body: bytes, message: str) -> None:
    with pytest.raises(faas.BadRequest, match=message):
        faas._parse(body, CollectRequest)


def test_a_number_that_overflows_to_infinity_is_a_400_naming_the_field(ftg_env: Path) -> None:
    cfg = freeze_config(**SMALL)
    body = _body("reward-aggregator", cfg, 0)
    text = json.dumps(body).replace('"episode_returns": []', '"episode_returns": [1.0, 1e400]', 1)
    err = _refused(post("reward-aggregator", text.encode()), 400, "shards.0.episode_returns.1")
    assert "finite number" in err["error"]
    upd = _body("policy-updater", cfg, 0)
    text = json.dumps(upd).replace('"adv_mean": 0.0', '"adv_mean": -1e999')
    _refused(post("policy-updater", text.encode()), 400, "batch.adv_mean")


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ('{"a":', "}")])
def test_deep_nesting_inside_a_valid_body_is_a_400(
    ftg_env: Path, function: str, depth: int, opener: str, closer: str
) -> None:
    cfg = freeze_config(**SMALL)
    deep = opener * depth + "1" + closer * depth
    body = json.dumps({**_body(function, cfg, 0), "zz": "@"}).replace('"@"', deep)
    resp = faas.call(function, body.encode())
    assert resp.status == 400 and f"deeper than {faas.MAX_JSON_DEPTH} levels" in resp.json()["error"]


def test_depth_counts_structure_not_brackets_inside_strings() -> None:
    at_limit = "[" * faas.MAX_JSON_DEPTH + "]" * faas.MAX_JSON_DEPTH
    faas.check_body(at_limit.encode())
    faas.check_body(json.dumps({"s": "[{" * 10_000, "t": 'a\\"[[[['}).encode())
    with pytest.raises(faas.BadRequest, match="deeper"):
        faas.check_body(("[" + at_limit + "]").encode())
    with pytest.raises(faas.BadRequest, match="deeper"):  # unclosed brackets count too
        faas.check_body(b'{"a": ' + b"[" * 40)


def test_a_body_over_the_size_limit_is_a_413(ftg_env: Path) -> None:
    cfg = freeze_config(**SMALL)
    body = json.dumps({**_ref(cfg, 0), "shard": 0, "zz": "x" * faas.MAX_BODY_BYTES}).encode()
    resp = faas.call("rollout-collector", body)
    assert resp.status == 413 and "at most" in resp.json()["error"]


def test_many_validation_problems_make_a_short_message(ftg_env: Path) -> None:
    cfg = freeze_config(**SMALL)
    body = _body("reward-aggregator", cfg, 0)
    body["shards"][0]["episode_lengths"] = [-1] * 10_000
    resp = post("reward-aggregator", body)
    assert resp.status == 400 and len(resp.body) < 1_000 and "and 9995 more" in resp.json()["error"]


class Stats(BaseModel):
    loss: float
    seconds: float = 0.0


def test_a_non_finite_number_in_a_result_is_a_500_with_a_json_body(ftg_env: Path) -> None:
    cfg = freeze_config(**SMALL)

    def work(req: RunRef, ctx: FunctionContext) -> Stats:
        return Stats(loss=math.nan)

    resp = faas.render_response(faas.serve(Event(body=json.dumps(_ref(cfg, 0)).encode()), RunRef, work))
    assert resp.status == 500 and "NaN" not in resp.body
    assert "not JSON compliant" in resp.json()["error"]

    def wire(req: RunRef, ctx: FunctionContext) -> EvalResult:
        returns = np.array([1.0, math.inf])
        return EvalResult(
            key="k", version=1, episodes=2, mean_return=float(returns.mean()), std_return=0.0,
            iqm_return=1.0, min_return=1.0, max_return=1.0, mean_length=1.0,
        )  # fmt: skip

    resp = faas.render_response(faas.serve(Event(body=json.dumps(_ref(cfg, 0)).encode()), RunRef, wire))
    assert resp.status == 500 and "mean_return" in resp.json()["error"] and "finite" in resp.json()["error"]


def _eval_result(**fields: Any) -> EvalResult:
    values: dict[str, Any] = {
        "key": "k", "version": 1, "episodes": 2, "mean_return": 1.5, "std_return": 0.5,
        "iqm_return": 1.5, "min_return": 1.0, "max_return": 2.0, "mean_length": 9.0,
    }  # fmt: skip
    return EvalResult(**{**values, **fields})


def test_a_wire_result_is_answered_as_its_json_text_with_its_seconds(ftg_env: Path) -> None:
    cfg = freeze_config(**SMALL)
    sent = _eval_result(ope_error="é NaN and Infinity, in words")  # the words, not numbers

    out = faas.serve(Event(body=json.dumps(_ref(cfg, 0)).encode()), RunRef, lambda req, ctx: sent)
    resp = faas.render_response(out)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    body = json.loads(resp.body)
    assert body["seconds"] >= 0.0
    assert body == {**sent.model_dump(mode="json"), "seconds": body["seconds"]}

    fast = faas.serve(Event(body=json.dumps(_ref(cfg, 0)).encode()), RunRef, lambda req, ctx: _eval_result())
    assert isinstance(fast["body"], str)  # written by pydantic, not re-encoded by render_response
    assert json.loads(faas.render_response(fast).body)["mean_return"] == 1.5


def test_a_non_finite_number_set_after_validation_is_still_a_500(ftg_env: Path) -> None:
    cfg = freeze_config(**SMALL)

    def work(req: RunRef, ctx: FunctionContext) -> EvalResult:
        result = _eval_result()
        result.max_return = math.inf  # assignment is not validated: the serializer must catch it
        return result

    resp = faas.render_response(faas.serve(Event(body=json.dumps(_ref(cfg, 0)).encode()), RunRef, work))
    assert resp.status == 500 and resp.headers["Content-Type"] == "application/json"
    assert "Infinity" not in resp.body and "not JSON compliant" in resp.json()["error"]


def test_render_response_never_sends_nan() -> None:
    resp = faas.render_response({"statusCode": 200, "body": {"explained_variance": math.nan}})
    assert resp.status == 500 and resp.headers["Content-Type"] == "application/json"
    assert "not valid JSON" in resp.json()["error"] and "NaN" not in resp.body


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (CollectResult, "episode_returns"),
        (AggregateResult, "mean_return"),
        (AggregateResult, "adv_std"),
        (UpdateResult, "explained_variance"),
        (UpdateResult, "pg_loss"),
        (EvalResult, "mean_return"),
        (EvalResult, "seconds"),
    ],
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_result_models_refuse_non_finite_numbers(model: type[BaseModel], field: str, value: float) -> None:
    with pytest.raises(ValidationError) as err:
        model.model_validate({field: [value] if field == "episode_returns" else value})
    assert any(e["type"] == "finite_number" and e["loc"][0] == field for e in err.value.errors())
