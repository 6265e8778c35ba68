"""A sweep: configurations x seeds, each trial its own run, trials in parallel up to a bound.

MLflow holds one parent run per sweep and a child run per trial; the metadata store holds the sweep
record and each run's progress, so ``resume`` can pick up any interrupted trial.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from ftg_common import gc_policy, layout
from ftg_common.config import HParams, RunConfig, SweepConfig
from ftg_common.errors import CorruptObjectError
from ftg_common.ids import validate_run_id
from ftg_common.meta.base import MetaStore
from ftg_common.settings import Settings
from ftg_common.store.base import KeyNotFoundError, ObjectStore
from workflows.ab import (
    ABReport,
    TrialEvidence,
    best_config,
    champion_verdict,
    config_statistics,
    decide_trials,
    finals_by_config,
    print_report,
    trial_evidence,
)
from workflows.compare import (
    ConfigRow,
    TrialRow,
    best_trial,
    compare,
    cost_as_dict,
    rows_as_dicts,
    to_markdown,
    to_rich_table,
)
from workflows.cost import SweepCost
from workflows.driver import RunDriver, RunFailed, RunSummary, TrialProgress
from workflows.engines.base import Engine
from workflows.gateway_stats import load_runtime, measure_segment, runtime_probe, sweep_cost_of
from workflows.progress import SweepProgress
from workflows.sweep_runs import SweepTags, TrialTags, open_sweep_runs, parent_run
from workflows.tracking import RunRef


@dataclass
class Services:
    """What a sweep runs on, opened once per command: stores, the engine, and the tracker.

    Attributes:
        settings: the settings they were opened from.
        store: object store.
        meta: metadata store.
        engine: the embedded engine or Argo (``FTG_ENGINE``).
        tracker: MLflow tracker, or None without tracking.
        observers: also told every trial's progress (e.g. the Prometheus ``TrainingMetrics``).
    """

    settings: Settings
    store: ObjectStore
    meta: MetaStore
    engine: Engine
    tracker: Any | None
    _off_policy_engine: Engine | None = None
    observers: list[Callable[[TrialProgress], None]] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        """Base URL of the function gateway the engine calls."""
        return self.engine.gateway

    def engine_for(self, cfg: RunConfig) -> Engine:
        """The engine running ``cfg``'s iteration template: ``engine`` for PPO, the off-policy one for DQN.

        The embedded off-policy engine shares ``engine``'s invoker (its warm workers); on Argo it
        installs the off-policy WorkflowTemplate beside the on-policy one.
        """
        if not cfg.off_policy:
            return self.engine
        if self._off_policy_engine is None:
            self._off_policy_engine = _off_policy_engine(self.settings, self.engine)
        return self._off_policy_engine

    def close(self) -> None:
        """Flush the tracker, stop the engine's workers, close the metadata store."""
        if self.tracker is not None:
            self.tracker.close()
        self.engine.close()
        self.meta.close()


def open_services(settings: Settings, tracking: bool = True, warm: bool = True) -> Services:
    """Open the stores, the tracker and the engine ``settings`` name.

    Args:
        settings: the ``FTG_`` settings.
        tracking: open an MLflow tracker.
        warm: start the local worker pool now (and wait for it), so no run's clock pays for it.
    """
    from ftg_common.meta import open_meta
    from ftg_common.store import open_store
    from workflows.engines.invokers import (
        HttpInvoker,
        InProcessInvoker,
        Invoker,
        PoolInvoker,
        RoutingInvoker,
    )
    from workflows.engines.local import LOCAL_GATEWAY, LocalEngine

    gc_policy.apply(settings.gc_thresholds)  # this process drives the runs (ftg_common/gc_policy.py)
    store = open_store(settings.store_url, settings)
    meta = open_meta(settings.meta_url, settings)
    tracker = None
    if tracking:
        from workflows.tracking import Tracker

        tracker = Tracker(settings, deferred=warm)
    if settings.engine == "argo":
        return Services(settings, store, meta, _argo_engine(settings), tracker)
    from workflows.placement import PlacementError, check_embedded

    try:
        check_embedded(settings)
    except PlacementError as exc:
        raise SystemExit(str(exc)) from exc
    # The workers start now; compiling the DAG (importing Hera, ~0.5 s) overlaps their imports.
    gateway = LOCAL_GATEWAY if settings.gateway_url == "local" else settings.gateway_url
    # Warm workers only serve local:// calls; with a gateway every call is HTTP, so none is started.
    pooled = settings.local_workers > 0 and gateway == LOCAL_GATEWAY
    local: Invoker = InProcessInvoker()
    if pooled:
        spin, follow_ons = settings.pool_spin_us, settings.pool_follow_ons
        local = PoolInvoker(settings.local_workers, spin_us=spin, follow_ons=follow_ons)
    http: Invoker = HttpInvoker()
    if settings.gateway_async:  # every call to an http(s) gateway via /async-function and a callback
        from workflows.engines.async_invoker import from_settings

        http = from_settings(settings)
    engine = LocalEngine(
        RoutingInvoker(local=local, http=http),
        gateway=gateway,
        iterations_per_workflow=settings.local_iterations_per_workflow,
    )
    if warm and isinstance(local, PoolInvoker):
        local.warmup()
    if tracker is not None:
        tracker.start()  # MLflow's import (~1.5 s of CPU) would otherwise slow the workers' start
    return Services(settings, store, meta, engine, tracker)


def _off_policy_engine(settings: Settings, engine: Engine) -> Engine:
    """The off-policy twin of ``engine``: same gateway and workers, the off-policy template."""
    from workflows.engines.compiler import compile_workflow
    from workflows.engines.local import LocalEngine
    from workflows.iteration import off_policy_manifest

    if isinstance(engine, LocalEngine):
        # Not closed on its own: the invoker belongs to ``engine``.
        compiled = compile_workflow(off_policy_manifest())
        k = engine.iterations_per_workflow
        return LocalEngine(engine.invoker, compiled, gateway=engine.gateway, iterations_per_workflow=k)
    return _argo_engine(settings, off_policy=True)


def _argo_engine(settings: Settings, off_policy: bool = False) -> Engine:
    """The engine for FTG_ENGINE=argo, with the iteration template installed on the server."""
    from workflows.engines.argo import ArgoEngine
    from workflows.placement import PlacementError, argo_verify, driver_gateway, workflow_gateway

    if not settings.argo_host:
        raise SystemExit("FTG_ENGINE=argo needs FTG_ARGO_HOST (the Argo server URL)")
    try:
        # The driver's calls and the Workflow's steps reach the gateway by different addresses.
        mine, theirs, verify = driver_gateway(settings), workflow_gateway(settings), argo_verify(settings)
    except PlacementError as exc:
        raise SystemExit(str(exc)) from exc
    engine = ArgoEngine(
        settings.argo_host,
        settings.argo_token,
        settings.argo_namespace,
        verify,
        poll_seconds=settings.argo_poll_seconds,
        gateway=mine,
        workflow_gateway=theirs,
        off_policy=off_policy,
        iterations_per_workflow=settings.argo_iterations_per_workflow,
    )
    engine.ensure_template()
    return engine


def make_sweep_id(name: str, now: float | None = None) -> str:
    """A new sweep's id, unique per submit: ``<name>-<UTC yyyymmdd-hhmmss>-<8 random [a-z0-9]>``.

    The random part (36**8, about 2.8e12 values) keeps two submits of one sweep in the same second apart:
    1,000 ids made in one second share one with probability about 1.8e-7. At most 20 characters of the
    name are kept, so the id (at most 45 characters) leaves :func:`trial_run_id` room for
    ``-<config>-s<seed>`` within the 63 a run id may have.

    Args:
        name: the sweep's name (a valid run id).
        now: epoch seconds of the stamp; the current time when None.

    Raises:
        ftg_common.ids.InvalidIdError: the result is not a valid run id (a bad name).
    """
    import secrets  # here, not at the top: only this function needs it

    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    suffix = "".join(secrets.choice(alphabet) for _ in range(8))
    return validate_run_id(f"{name[:20].rstrip('-')}-{stamp}-{suffix}", "sweep_id")


def trial_run_id(sweep_id: str, config: str, seed: int) -> str:
    """The run id of one trial: ``<sweep_id>-<config>-s<seed>``, a valid run id of at most 63 characters.

    When that is too long, the config name gives way to 8 hex digits of a digest of the whole id (and, for
    a sweep id longer than :func:`make_sweep_id` makes, the sweep id is cut), so distinct trials keep
    distinct ids and a sweep id made by :func:`make_sweep_id` stays whole for seeds below 10**7.

    Raises:
        ftg_common.ids.InvalidIdError: the result is not a valid run id.
    """
    rid = f"{sweep_id}-{config}-s{seed}"
    if len(rid) > 63:
        tail = f"-{hashlib.sha256(rid.encode()).hexdigest()[:8]}-s{seed}"
        rid = f"{sweep_id[: 63 - len(tail)].rstrip('-')}{tail}"
    return validate_run_id(rid)


def _params(name: str, seed: int, hp: HParams) -> dict[str, Any]:
    params: dict[str, Any] = {f"{hp.algo}.{k}": v for k, v in hp.model_dump(mode="json").items()}
    params.update(
        {
            "config": name,
            "seed": seed,
            "algo": hp.algo,
            "rollout_size": hp.rollout_size,
            "iterations": hp.n_iterations,
        }
    )
    return params


def submit(sweep: SweepConfig, services: Services, console: Console, sweep_id: str | None = None) -> str:
    """Create the sweep and its trials, run them, and print the comparison. Returns the sweep id."""
    sweep_id = sweep_id or make_sweep_id(sweep.name)
    trials = sweep.trial_configs()
    run_ids = []
    tagged: list[TrialTags] = []
    for name, hp in trials.items():
        for seed in sweep.seeds:
            cfg = RunConfig.for_algo(
                trial_run_id(sweep_id, name, seed), seed, hp, sweep_id=sweep_id, config_name=name
            )
            services.meta.create_run(
                cfg.run_id, sweep_id=sweep_id, extra={"config_name": name, "seed": seed, "algo": cfg.algo}
            )
            services.store.put_json(layout.sweep_trial_key(sweep_id, cfg.run_id), cfg.model_dump(mode="json"))
            run_ids.append(cfg.run_id)
            tagged.append(TrialTags(cfg.run_id, name, seed, _params(name, seed, hp)))
    services.meta.create_sweep(
        sweep_id,
        {
            "name": sweep.name,
            "created": time.time(),
            "threshold": next(iter(trials.values())).threshold,
            "runs": run_ids,
            "max_parallel": sweep.max_parallel,
        },
    )
    mlflow_runs = None
    if services.tracker:
        # On the tracker's job pool: the trials start now, not once MLflow has opened (~2 s).
        params = {
            "sweep.name": sweep.name,
            "sweep.seeds": sweep.seeds,
            "sweep.configs": ",".join(trials),
            "sweep.max_parallel": sweep.max_parallel,
        }
        texts = {"sweep.json": sweep.model_dump_json(indent=2)}
        mlflow_runs = services.tracker.submit_job(
            sweep_id,
            _OPEN_RUNS_JOB,
            open_sweep_runs,
            services.tracker,
            services.meta,
            sweep_id,
            SweepTags(params, texts),
            tagged,
        )
    try:
        run_trials(sweep_id, run_ids, sweep.max_parallel, services, console, mlflow_runs)
    except SweepFailed:
        finalize(sweep_id, services, console)  # the trials that did finish still get their table
        raise
    finalize(sweep_id, services, console)
    return sweep_id


def load_trial_config(services: Services, sweep_id: str, run_id: str) -> RunConfig:
    """The frozen config of trial ``run_id``, as ``submit`` stored it."""
    return RunConfig.model_validate(services.store.get_json(layout.sweep_trial_key(sweep_id, run_id)))


def _tell(*observers: Callable[[TrialProgress], None]) -> Callable[[TrialProgress], None]:
    """One progress callback telling each of ``observers`` in turn."""

    def tell(p: TrialProgress) -> None:
        for observe in observers:
            observe(p)

    return tell


class SweepFailed(RuntimeError):
    """One or more trials failed; the message names each with its error."""


def _drive_and_close(driver: RunDriver, tracker: Any | None) -> RunSummary:
    """Drive one trial; its MLflow child run ends with the trial, so the UI shows its real duration."""
    status = "FAILED"
    try:
        summary = driver.drive()
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow_id = driver.mlflow_run.wait() if tracker is not None else None
        if tracker is not None and mlflow_id:
            tracker.end_run(mlflow_id, status)


def _open_missing_runs(
    services: Services, sweep_id: str, run_ids: list[str]
) -> Future[Mapping[str, str]] | None:
    """Create, in the background, the MLflow runs a crash kept ``submit`` from creating (or None)."""
    tracker = services.tracker
    if tracker is None:
        return None
    missing = [
        rid for rid in run_ids if not (services.meta.get_run(rid).get("extra") or {}).get("mlflow_run_id")
    ]
    if not missing:
        return None
    sweep = services.meta.get_sweep(sweep_id)
    trials = []
    for rid in missing:
        try:
            cfg = load_trial_config(services, sweep_id, rid)
        except (KeyNotFoundError, CorruptObjectError):
            continue  # reported as that trial's failure by run_trials
        name = cfg.config_name or ""
        trials.append(TrialTags(rid, name, cfg.seed, _params(name, cfg.seed, cfg.hparams)))
    params = {"sweep.name": sweep.get("name"), "sweep.max_parallel": sweep.get("max_parallel")}
    future: Future[Mapping[str, str]] = tracker.submit_job(
        sweep_id, _OPEN_RUNS_JOB, open_sweep_runs, tracker, services.meta, sweep_id, SweepTags(params), trials
    )
    return future


def run_trials(
    sweep_id: str,
    run_ids: list[str],
    max_parallel: int,
    services: Services,
    console: Console,
    mlflow_runs: Future[Mapping[str, str]] | None = None,
) -> None:
    """Drive every unfinished trial, ``max_parallel`` at a time, and repair the finished ones' tracking.

    A failing trial does not stop the others; failures are reported together at the end. Ctrl-C stops
    all trials at their next iteration boundary, with everything committed so far kept for ``resume``.
    A trial already finished (a resumed sweep) gets its MLflow history repaired from its stored records
    and its MLflow run closed, in case a crash came before either.

    ``mlflow_runs`` is the job creating the trials' MLflow runs (``submit``); without it, trials whose
    runs were never created (a crash before that job finished) get theirs now, in the background.

    Raises:
        SweepFailed: one or more trials failed (the others ran to the end).
        KeyboardInterrupt: Ctrl-C, once the running iterations have finished.
    """
    stop = threading.Event()
    progress = SweepProgress(f"sweep {sweep_id}", console)
    drivers = []
    failures: list[tuple[str, BaseException]] = []
    if mlflow_runs is None:
        mlflow_runs = _open_missing_runs(services, sweep_id, run_ids)
    for rid in run_ids:
        record = services.meta.get_run(rid)
        try:
            cfg = load_trial_config(services, sweep_id, rid)
        except (KeyNotFoundError, CorruptObjectError) as exc:
            failures.append((rid, RunFailed(f"the trial's frozen config cannot be read: {exc}")))
            continue
        extra = record.get("extra") or {}
        mlflow_id = extra.get("mlflow_run_id")
        ref = RunRef(mlflow_id) if mlflow_id or mlflow_runs is None else RunRef(mlflow_runs, rid)
        driver = RunDriver(
            cfg,
            engine=services.engine_for(cfg),
            store=services.store,
            meta=services.meta,
            config_name=cfg.config_name or "",
            tracker=services.tracker,
            mlflow_run_id=ref,
            on_progress=_tell(progress, *services.observers),
            stop=stop,
        )
        if record["status"] == "finished":
            if services.tracker and (mlflow_id := ref.wait()):
                try:
                    driver.reconcile()
                    if services.tracker.client.get_run(mlflow_id).info.status == "RUNNING":
                        services.tracker.end_run(mlflow_id, "FINISHED")
                except (RunFailed, KeyNotFoundError, CorruptObjectError) as exc:
                    failures.append((rid, exc))
            continue
        if services.tracker and mlflow_id:
            services.tracker.reopen(mlflow_id)
        summary = RunSummary.from_dict(extra.get("summary"))
        total_steps = cfg.hparams.n_iterations * cfg.hparams.rollout_size
        progress.add(
            TrialProgress(
                rid,
                cfg.config_name or "",
                cfg.seed,
                int(record["last_iteration"]) + 1,
                cfg.hparams.n_iterations,
                summary.steps,
                total_steps,
                status="queued",
                eval_return=summary.final_return,
            )
        )
        drivers.append(driver)
    futures = {}
    if drivers:
        # Idle GB-s and cold starts of the function runtime while the trials run (the cost report).
        source, probe = runtime_probe(services.settings, services.engine)
        segment = measure_segment(services.store, sweep_id, source, probe)
        trial_pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="trial")
        with segment, progress, trial_pool as pool:
            futures = {pool.submit(_drive_and_close, d, services.tracker): d for d in drivers}
            try:
                wait(futures)
            except KeyboardInterrupt:
                stop.set()
                console.print(
                    "[yellow]interrupted: finishing the current iterations; resume with "
                    f"`python workflows/ppo_sweep.py resume {sweep_id}`[/yellow]"
                )
                wait(futures)
                raise
    for f, d in futures.items():
        if (error := f.exception()) is not None:
            failures.append((d.cfg.run_id, error))
    if failures:
        raise SweepFailed("; ".join(f"{rid}: {exc}" for rid, exc in failures))


def resume_problems(services: Services, sweep_id: str, run_ids: list[str]) -> list[str]:
    """What stops ``resume`` from continuing these trials: one line per damaged or missing object.

    Each trial needs its run record, its frozen config (``sweeps/<sweep>/trials/<run>.json``) and every
    object its committed versions and iterations wrote (:func:`ftg_common.verify.verify_run`).

    Returns:
        ``"<key>: <kind>: <reason>"`` lines; empty when every trial can be resumed.
    """
    from ftg_common.meta.base import RunNotFoundError
    from ftg_common.verify import verify_run

    problems: list[str] = []
    for rid in run_ids:
        try:
            services.meta.get_run(rid)
        except RunNotFoundError:
            problems.append(f"run {rid}: missing: the metadata store has no run record for it")
            continue
        key = layout.sweep_trial_key(sweep_id, rid)
        if not services.store.exists(key):
            problems.append(f"{key}: missing: absent, but it is the trial's frozen config, written at submit")
        problems += [str(d) for d in verify_run(services.store, services.meta, rid)]
    return problems


def trial_rows(services: Services, sweep_id: str) -> list[TrialRow]:
    """One row per trial of the sweep, from each run record's summary, in the sweep's order."""
    rows = []
    for rec in services.meta.list_runs(sweep_id):
        extra = rec.get("extra") or {}
        s = RunSummary.from_dict(extra.get("summary"))
        rows.append(
            TrialRow(
                rec["run_id"],
                extra.get("config_name", "?"),
                int(extra.get("seed", -1)),
                rec["status"],
                s.final_return,
                s.threshold_step,
                s.threshold_time_s,
                s.threshold_time_incl_eval_s,
                s.wall_s,
                s.steps,
                s.gb_s,
                # Records written before DQN existed have no algo: they are PPO runs.
                str(extra.get("algo", "ppo")),
            )
        )
    order = {rid: i for i, rid in enumerate(services.meta.get_sweep(sweep_id).get("runs", []))}
    return sorted(rows, key=lambda r: order.get(r.run_id, 1 << 30))


def sweep_cost(services: Services, sweep_id: str, trials: list[TrialRow]) -> SweepCost | None:
    """The whole sweep's cost: its trials' billed GB-s, the runtime's idle GB-s and cold starts.

    None before the trials first ran (nothing measured yet).
    """
    st = services.settings
    runtime = load_runtime(services.store, sweep_id)
    billed = sum(t.gb_s for t in trials)
    return sweep_cost_of(runtime, billed, st.faas_usd_per_gb_second, st.dedicated_server_usd_per_hour)


def comparison(services: Services, sweep_id: str) -> tuple[list[TrialRow], list[ConfigRow]]:
    """The sweep's trial rows and its A/B table."""
    rows = trial_rows(services, sweep_id)
    st = services.settings
    return rows, compare(rows, st.faas_usd_per_gb_second, st.dedicated_server_usd_per_hour)


_FINALIZE_JOB = "finalize"
_OPEN_RUNS_JOB = "open-mlflow-runs"
# Set on a trial's MLflow run once its final policy is registered, so finalizing twice (resume after a
# partly failed sweep) does not register the same policy again.
_MODEL_VERSION_TAG = "ftg.registered_model_version"


def _finalize_trial(services: Services, sweep_id: str, run_id: str) -> str | None:
    """Log one finished trial's summary metrics, checkpoint URIs and final policy (as a registered model).

    Returns:
        The registered model version, or None when the trial has no MLflow run or did not finish.
    """
    from workflows.models import log_policy_model

    tracker = services.tracker
    rec = services.meta.get_run(run_id)
    extra = rec.get("extra") or {}
    child = extra.get("mlflow_run_id")
    if tracker is None or rec["status"] != "finished" or not child:
        return None
    done = tracker.client.get_run(child).data.tags.get(_MODEL_VERSION_TAG)
    if done:
        return str(done)
    s = RunSummary.from_dict(extra.get("summary"))
    # Once: a finalize repeated after a crash (or by resume) adds no second row.
    tracker.log_metrics_once(
        child,
        {
            "final_return": s.final_return,
            "final_iqm": s.final_iqm,
            "steps_to_threshold": s.threshold_step,
            "time_to_threshold_s": s.threshold_time_s,
            "time_to_threshold_incl_eval_s": s.threshold_time_incl_eval_s,
            "wall_s": s.wall_s,
            "cost_gb_s": s.gb_s,
            "invocations": s.invocations,
        },
    )
    version = int(rec["version"])
    cfg = load_trial_config(services, sweep_id, run_id)
    base = services.store.url.rstrip("/")
    tracker.set_tags(
        child,
        {
            "ftg.checkpoint_uri": f"{base}/{layout.ckpt_prefix(run_id, version)}",
            "ftg.policy_uri": f"{base}/{layout.policy_key(run_id, version)}",
        },
    )
    # Every evaluated checkpoint, so any point of the learning curve can be reloaded.
    evaluated = [
        {
            "env_steps": steps,
            "version": steps // cfg.hparams.rollout_size,
            "eval_mean_return": ret,
            "checkpoint_uri": f"{base}/{layout.ckpt_prefix(run_id, steps // cfg.hparams.rollout_size)}",
        }
        for steps, ret in s.evals
    ]
    tracker.log_text(child, json.dumps(evaluated, indent=2), "checkpoints.json")
    registered = f"ftg-{services.meta.get_sweep(sweep_id)['name']}"
    info = log_policy_model(child, services.store, run_id, version, registered)
    if info.registered_model_version is None:
        return None
    from workflows.ab import hparams_digest
    from workflows.models import tag_model_version

    # Where the version's evidence lives: a later sweep re-reads these to challenge it as champion.
    tag_model_version(
        tracker.client,
        registered,
        info.registered_model_version,
        {
            "ftg.sweep_id": sweep_id,
            "ftg.config": cfg.config_name or "",
            "ftg.config_digest": hparams_digest(cfg),
            "ftg.run_id": run_id,
        },
    )
    tracker.set_tags(child, {_MODEL_VERSION_TAG: str(info.registered_model_version)})
    return str(info.registered_model_version)


def finalize_trials_as_they_finish(services: Services) -> None:
    """Start each trial's part of :func:`finalize` (model logging, ~0.1-1 s) the moment the trial ends.

    It then runs on the tracker's job pool while other trials still train, instead of one trial after
    another at the end of the sweep; :func:`finalize` waits for it. Call once, before running trials.
    """
    tracker = services.tracker
    if tracker is None:
        return

    def job(child: str) -> str | None:
        tags = tracker.client.get_run(child).data.tags
        if "ftg.run_id" not in tags or "ftg.sweep_id" not in tags:
            return None  # not a trial's run (a sweep's parent run ends through finalize itself)
        return _finalize_trial(services, tags["ftg.sweep_id"], tags["ftg.run_id"])

    def on_run_end(child: str, status: str) -> None:
        if status == "FINISHED":
            tracker.submit_job(child, _FINALIZE_JOB, job, child)

    tracker.on_run_end(on_run_end)


_PLOTS_JOB = "plots"


def _log_plots(
    tracker: Any,
    parent: str,
    evidence: list[TrialEvidence],
    report: ABReport,
    threshold: float | None,
    sweep_id: str,
) -> list[str]:
    """Draw the sweep's pictures into a temporary folder and log them under the parent run's ``plots/``."""
    import tempfile

    from workflows.ab import write_plots

    with tempfile.TemporaryDirectory(prefix="ftg-plots-") as tmp:
        written = write_plots(evidence, report, tmp, threshold=threshold, title=sweep_id)
        for path in written:
            tracker.log_artifact(parent, path, "plots")
    return [p.name for p in written]


def _tag_statistics(
    tracker: Any,
    registered: str,
    evidence: list[TrialEvidence],
    report: ABReport,
    versions: Mapping[str, str],
) -> None:
    """Tag each registered version with its own final return and its configuration's statistics."""
    from workflows.models import tag_model_version

    by_run = {t.run_id: t for t in evidence}
    stats = {c: config_statistics(evidence, report, c) for c in dict.fromkeys(t.config for t in evidence)}
    for rid, version in versions.items():
        t = by_run.get(rid)
        if t is None:
            continue
        tags = dict(stats.get(t.config, {}))
        if t.final_return is not None:
            tags["ftg.stats.final_return"] = f"{t.final_return:.4f}"
        tag_model_version(tracker.client, registered, version, tags)


def _promote_champion(
    services: Services,
    sweep_id: str,
    registered: str,
    trials: list[TrialRow],
    evidence: list[TrialEvidence],
    versions: Mapping[str, str],
    parent: str,
) -> str | None:
    """Point ``champion`` at the best trial of the sweep's best configuration, if the evidence says so.

    The alias moves when there is no champion yet, when the champion came from this sweep (a repeated
    finalize), or when the best configuration beats the champion's configuration (re-read from the
    champion's own sweep) with P(improvement)'s CI lower end above ``FTG_CHAMPION_MIN_P``. Otherwise the
    champion stays, and the parent run is tagged with why.

    Returns:
        The line saying what happened (None when no trial of the sweep has a registered model).
    """
    from ftg_common.meta.base import RunNotFoundError
    from workflows.models import current_champion, set_champion, tag_model_version

    tracker = services.tracker
    assert tracker is not None
    config = best_config(evidence)
    best = best_trial([t for t in trials if t.config == config and t.run_id in versions])
    if config is None or best is None:
        return None
    version = versions[best.run_id]
    champion = current_champion(tracker.client, registered)
    why = ""
    if champion is not None and champion.version != version and champion.sweep_id != sweep_id:
        label, theirs = f"{sweep_id}:{config}", f"{champion.sweep_id}:{champion.config}"
        their_evidence: list[TrialEvidence] = []
        if champion.sweep_id:
            # Without its results (another metadata store) the champion cannot be challenged: said below.
            with contextlib.suppress(KeyError, RunNotFoundError, ValueError):
                their_evidence = trial_evidence(services.store, services.meta, champion.sweep_id)
        their_finals = finals_by_config(their_evidence).get(champion.config or "")
        keep = f"kept champion {champion.run_id} (version {champion.version})"
        if not their_finals:
            line = (
                f"{keep}: its sweep {champion.sweep_id}'s results are not in the metadata store, so it "
                f"cannot be challenged (delete the alias of {registered} to promote {best.run_id})"
            )
        else:
            try:
                verdict = champion_verdict(
                    finals_by_config(evidence)[config],
                    their_finals,
                    label,
                    theirs,
                    services.settings.champion_min_p,
                )
            except ValueError as exc:  # trained on different environments
                verdict, line = None, f"{keep}: {theirs} and {label} are not comparable: {exc}"
            if verdict is not None:
                why = verdict.line
                line = f"{keep}: {why}" if verdict.winner != label else ""
        if line:
            tracker.set_tags(parent, {"ftg.champion_kept": champion.run_id, "ftg.champion_verdict": line})
            return line
    set_champion(registered, version)
    tags = {"ftg.champion_run": best.run_id, "ftg.champion_model": f"models:/{registered}@champion"}
    if why:
        tags["ftg.champion_verdict"] = why
        tag_model_version(tracker.client, registered, version, {"ftg.stats.p_vs_previous_champion": why})
    tracker.set_tags(parent, tags)
    if champion is None:
        return f"champion: {best.run_id} (version {version}, the first of {registered})"
    if champion.version == version or champion.sweep_id == sweep_id:
        return f"champion: {best.run_id} (version {version}, this sweep's best configuration {config})"
    return f"champion moved to {best.run_id} (version {version}): {why}"


def finalize(sweep_id: str, services: Services, console: Console) -> None:
    """Log final policies as registered models, name the champion, log and print the A/B table.

    Trials whose models are already being logged (:func:`finalize_trials_as_they_finish`) are waited
    for; the others are logged now, in parallel on the tracker's job pool.
    """
    sweep = services.meta.get_sweep(sweep_id)
    trials, table = comparison(services, sweep_id)
    cost = sweep_cost(services, sweep_id, trials)
    evidence = trial_evidence(services.store, services.meta, sweep_id)
    report = decide_trials(evidence)
    champion_line = None
    tracker = services.tracker
    if tracker:
        job = tracker.job(sweep_id, _OPEN_RUNS_JOB)
        if job is not None:
            job.result()  # the trials' runs exist (every trial has finished, so this is long done)
    parent = parent_run(tracker, sweep_id, sweep.get("mlflow_parent_run_id")) if tracker else None
    threshold = sweep.get("threshold")
    if tracker and parent:
        registered = f"ftg-{sweep['name']}"
        # Drawn while the models are logged; matplotlib's object API draws safely off the main thread.
        plots = tracker.submit_job(
            parent, _PLOTS_JOB, _log_plots, tracker, parent, evidence, report, threshold, sweep_id
        )
        jobs = {}
        for t in trials:
            child = (services.meta.get_run(t.run_id).get("extra") or {}).get("mlflow_run_id")
            if t.status == "finished" and child:
                # Returns the job already started when the trial ended, if there is one.
                jobs[t.run_id] = tracker.submit_job(
                    child, _FINALIZE_JOB, _finalize_trial, services, sweep_id, t.run_id
                )
        versions = {rid: v for rid, job in jobs.items() if (v := job.result()) is not None}
        _tag_statistics(tracker, registered, evidence, report, versions)
        champion_line = _promote_champion(services, sweep_id, registered, trials, evidence, versions, parent)
        tracker.log_text(parent, json.dumps(report.as_dict(), indent=2), "ab.json")
        md = to_markdown(table, threshold, cost)
        tracker.log_text(parent, md, "compare.md")
        tracker.log_text(parent, json.dumps(rows_as_dicts(table), indent=2), "compare.json")
        if cost is not None:
            tracker.log_text(parent, json.dumps(cost_as_dict(cost), indent=2), "cost.json")
        all_done = all(t.status == "finished" for t in trials)
        # The sweep's results, once, and only once every trial has finished: a partial sweep's numbers
        # would otherwise stand beside (or in place of) the final ones after a resume.
        for r in table if all_done else []:
            tracker.log_metrics_once(
                parent,
                {
                    f"{r.config}.final_iqm": r.final_iqm,
                    f"{r.config}.reached": r.reached,
                    f"{r.config}.median_steps_to_threshold": r.median_steps_to_threshold,
                    f"{r.config}.median_time_to_threshold_s": r.median_time_to_threshold_s,
                },
            )
        if all_done and cost is not None:
            tracker.log_metrics_once(
                parent,
                {
                    "sweep.wall_s": cost.wall_s,
                    "sweep.billed_gb_s": cost.billed_gb_s,
                    "sweep.idle_gb_s": cost.idle_gb_s,
                    "sweep.cold_starts": cost.cold_starts,
                    "sweep.faas_usd": cost.faas_usd,
                    "sweep.idle_usd": cost.idle_usd,
                    "sweep.dedicated_usd": cost.dedicated_usd,
                },
            )
        try:
            plots.result()
        except Exception as exc:  # a picture that cannot be drawn must not fail a finished sweep
            console.print(f"[yellow]plots not logged: {exc}[/yellow]")
        tracker.end_run(parent, "FINISHED" if all_done else "KILLED")
    console.print(to_rich_table(table, threshold, f"A/B comparison — sweep {sweep_id}", cost))
    if champion_line:
        console.print(champion_line, highlight=False, soft_wrap=True)
    print_report(console, report)  # last: a sweep's output ends with its verdicts
