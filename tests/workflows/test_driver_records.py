"""The driver's records are the truth: summaries and MLflow are rebuilt from them after any crash."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from ftg_common import layout
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.errors import CorruptObjectError
from ftg_common.store.base import KeyNotFoundError
from tests.funcs import SMALL_PPO, drive_until_interrupted
from tests.funcs import driver as _driver
from workflows import metric_names as mn
from workflows.driver import (
    IterationRecord,
    RunFailed,
    describe_call_error,
    is_transient,
    summarize,
)
from workflows.engines.base import FunctionCallError

# 16 iterations of 128 steps, evaluated every 4; any CartPole return reaches threshold 0, so the
# first evaluation (after iteration 3, at 512 steps) decides steps-to-threshold.
SMALL = {**SMALL_PPO, "threshold": 0.0}


def _record(i: int, ret: float | None = None, elapsed: float = 1.0) -> IterationRecord:
    metrics = {mn.ITERATIONS: float(i + 1)}
    if ret is not None:
        metrics[mn.EVAL_MEAN_RETURN] = ret
        metrics[mn.EVAL_IQM_RETURN] = ret + 1
    return IterationRecord(i, 100 * (i + 1), 0, elapsed, 0.25 if ret is not None else 0.0, 0.5, 3, metrics)


def test_summary_is_a_function_of_the_records_in_any_order() -> None:
    records = [_record(0), _record(1, 50.0), _record(2), _record(3, 120.0), _record(4, 90.0)]
    s = summarize(records, threshold=100.0)
    assert s == summarize(list(reversed(records)), threshold=100.0)
    assert (s.steps, s.wall_s, s.eval_s, s.invocations) == (500, 5.0, 0.75, 15)
    assert s.threshold_step == 400 and s.threshold_time_s == 3.5 and s.threshold_time_incl_eval_s == 4.0
    assert (s.final_return, s.final_iqm, s.evals) == (90.0, 91.0, [(200, 50.0), (400, 120.0), (500, 90.0)])
    assert summarize(records, threshold=None).threshold_step is None
    assert IterationRecord.from_dict(records[3].as_dict()) == records[3]
    # What the driver does after each iteration: fold the new record into the summary so far.
    folded = summarize(records[:2], threshold=100.0)
    for r in records[2:]:
        folded.add(r, threshold=100.0)
    assert folded == s


@pytest.fixture
def services(ftg_env) -> Iterator[Any]:
    from ftg_common.settings import get_settings
    from workflows.sweep import open_services

    svc = open_services(get_settings(), tracking=True)
    yield svc
    svc.close()


def test_a_crash_between_commit_and_record_loses_no_evaluation_and_no_mlflow_row(services) -> None:
    ppo = PPOConfig(**SMALL)
    straight = _driver(RunConfig(run_id="straight", seed=3, ppo=ppo), services).drive()
    assert straight.threshold_step == 512

    tracker = services.tracker
    mlflow_id = tracker.start_parent("crashed", {})
    cfg = RunConfig(run_id="crashed", seed=3, ppo=ppo)
    # No tracker while it runs: every row it would have queued is lost, as with a killed process.
    drive_until_interrupted(cfg, services, 4)
    assert services.meta.get_run("crashed")["last_iteration"] == 3
    # The crash came after iteration 3's update committed and before its evaluation and record.
    store = services.store
    assert store.delete(layout.eval_key("crashed", 3)) and store.delete(layout.metrics_key("crashed", 3))
    services.meta.update_extra("crashed", {"summary": {}})

    resumed = _driver(cfg, services, tracker=tracker, mlflow_run_id=mlflow_id).drive()
    assert resumed.threshold_step == straight.threshold_step == 512
    assert (resumed.final_return, resumed.evals) == (straight.final_return, straight.evals)
    assert resumed.steps == straight.steps and resumed.invocations > 0
    rec = IterationRecord.from_dict(store.get_json(layout.metrics_key("crashed", 3)))
    assert rec.recovered and rec.metrics[mn.EVAL_MEAN_RETURN] == straight.evals[0][1]

    client = tracker.client
    steps = [128 * (i + 1) for i in range(16)]
    for key in (mn.EPISODES, mn.POLICY_LOSS, mn.LEARNING_RATE, mn.ITERATIONS, mn.WALL_S):
        assert sorted(m.step for m in client.get_metric_history(mlflow_id, key)) == steps, key
    evals = sorted(m.step for m in client.get_metric_history(mlflow_id, mn.EVAL_MEAN_RETURN))
    assert evals == [s for s, _ in straight.evals] == [512, 1024, 1536, 2048]

    # Reconciling again (another resume) finds nothing to add.
    records = _driver(cfg, services, tracker=tracker, mlflow_run_id=mlflow_id).reconcile()
    assert len(records) == 16
    assert _driver(cfg, services, tracker=tracker, mlflow_run_id=mlflow_id).repair_tracking(records) == 0


def test_rows_the_writer_already_logged_are_not_logged_twice(services) -> None:
    tracker = services.tracker
    mlflow_id = tracker.start_parent("twice", {})
    tracker.log_metrics(mlflow_id, {"a": 1.0, "b": 2.0}, step=10, timestamp_ms=1000)
    tracker.flush()
    rows = [(10, 1000, {"a": 1.0, "b": 2.0}), (20, 2000, {"a": 3.0})]
    assert tracker.log_missing(mlflow_id, rows) == 1
    assert tracker.log_missing(mlflow_id, rows) == 0
    assert [m.step for m in tracker.client.get_metric_history(mlflow_id, "a")] == [10, 20]
    assert tracker.log_metrics_once(mlflow_id, {"s": 5.0, "none": None}) == 1
    assert tracker.log_metrics_once(mlflow_id, {"s": 6.0}) == 0
    assert [m.value for m in tracker.client.get_metric_history(mlflow_id, "s")] == [5.0]


def test_transient_errors_are_retried_with_bounded_backoff_others_at_once(services) -> None:
    waits: list[float] = []
    cfg = RunConfig(run_id="flaky", seed=0, ppo=PPOConfig(**SMALL))
    driver = _driver(cfg, services, retry_delays=(0.5, 1.0, 2.0), sleep=waits.append)
    calls = iter([ConnectionError("refused"), TimeoutError("slow"), "ok"])

    def flaky() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert driver._io("reading x", flaky) == "ok" and waits == [0.5, 1.0]

    waits.clear()

    def down() -> None:
        raise ConnectionError("connection refused")

    with pytest.raises(
        RunFailed, match=r"reading y failed 4 times .*connection refused.*unreachable.*resume"
    ):
        driver._io("reading y", down)
    assert waits == [0.5, 1.0, 2.0]

    waits.clear()
    for permanent in (KeyNotFoundError("runs/flaky/x.json"), CorruptObjectError("k", "bad digest")):

        def fails(exc: Exception = permanent) -> None:
            raise exc

        with pytest.raises(type(permanent)):
            driver._io("reading z", fails)
    assert waits == []


def test_which_errors_are_transient() -> None:
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert not is_transient(sqlite3.OperationalError("no such table: runs"))
    assert not is_transient(KeyNotFoundError("k")) and not is_transient(CorruptObjectError("k", "x"))
    assert not is_transient(ValueError("x")) and not is_transient(FileNotFoundError("x"))


def test_a_function_error_answer_is_described_with_its_key() -> None:
    key = "runs/r/ckpt/000002/state.json"
    body = json.dumps({"error": f"corrupt object {key}: digest mismatch", "key": key})
    text = describe_call_error(FunctionCallError("policy-updater", 422, body))
    assert text.startswith("policy-updater answered 422: corrupt object")
    assert text.endswith("(key runs/r/ckpt/000002/state.json)")
    assert "gave no response" in describe_call_error(FunctionCallError("policy-updater", None, "refused"))


def test_resume_with_a_committed_object_lost_names_its_key(services) -> None:
    cfg = RunConfig(run_id="lossy", seed=1, ppo=PPOConfig(**SMALL))
    drive_until_interrupted(cfg, services, 3)
    services.store.delete(layout.metrics_key("lossy", 2))
    services.store.delete(layout.update_key("lossy", 2))
    with pytest.raises(RunFailed, match=r"runs/lossy/iter/000002/update\.json is missing.*verify lossy"):
        _driver(cfg, services).drive()
    assert services.meta.get_run("lossy")["status"] == "failed"


def test_a_run_created_while_the_trial_trains_gets_every_iteration_once(services) -> None:
    from concurrent.futures import Future

    from workflows.tracking import RunRef

    tracker = services.tracker
    created: Future[dict[str, str]] = Future()
    cfg = RunConfig(run_id="late", seed=1, ppo=PPOConfig(**SMALL))
    mlflow_id = tracker.start_parent("late", {})

    def on_progress(p: Any) -> None:
        if p.iteration == 5:  # the MLflow run appears after five iterations have ended
            created.set_result({"late": mlflow_id})

    driver = _driver(
        cfg, services, tracker=tracker, mlflow_run_id=RunRef(created, "late"), on_progress=on_progress
    )
    assert driver.mlflow_run_id is None
    driver.drive()
    assert driver.mlflow_run_id == mlflow_id
    tracker.flush()
    steps = [128 * (i + 1) for i in range(16)]
    for key in (mn.EPISODES, mn.ITERATIONS, mn.WALL_S):
        assert [m.step for m in tracker.client.get_metric_history(mlflow_id, key)] == steps, key


def test_a_run_that_could_not_be_created_loses_tracking_not_training(services) -> None:
    from concurrent.futures import Future

    from workflows.tracking import RunRef

    failed: Future[dict[str, str]] = Future()
    failed.set_exception(RuntimeError("tracking store down"))
    cfg = RunConfig(run_id="untracked", seed=1, ppo=PPOConfig(**SMALL))
    summary = _driver(
        cfg, services, tracker=services.tracker, mlflow_run_id=RunRef(failed, "untracked")
    ).drive()
    assert summary.steps == 128 * 16
    assert RunRef(failed, "untracked").wait() is None and RunRef(None).peek() is None


def test_sweep_runs_are_found_by_their_ids_before_any_is_created(services) -> None:
    from workflows.sweep_runs import PARENT, SweepTags, TrialTags, open_sweep_runs, parent_run

    tracker, meta = services.tracker, services.meta
    for rid in ("s-1--a--0", "s-1--a--1"):
        meta.create_run(rid, sweep_id="s-1")
    first = open_sweep_runs(
        tracker, meta, "s-1", SweepTags({"sweep.name": "s"}), [TrialTags("s-1--a--0", "a", 0)]
    )
    # Again, after a crash, with one more trial: the existing runs are reused, only the new one is made.
    both = [TrialTags("s-1--a--0", "a", 0, {"seed": 0}), TrialTags("s-1--a--1", "a", 1, {"seed": 1})]
    second = open_sweep_runs(tracker, meta, "s-1", SweepTags({"sweep.name": "s"}), both)
    assert second[PARENT] == first[PARENT] and second["s-1--a--0"] == first["s-1--a--0"]
    assert len(set(second.values())) == 3
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.`ftg.sweep_id` = 's-1'")
    assert len(runs) == 3
    for rid in ("s-1--a--0", "s-1--a--1"):
        assert meta.get_run(rid)["extra"]["mlflow_run_id"] == second[rid]
        assert tracker.client.get_run(second[rid]).data.tags["mlflow.parentRunId"] == first[PARENT]
    assert parent_run(tracker, "s-1") == first[PARENT] and parent_run(tracker, "s-2") is None
