"""FaaSTrainGym command line: submit | render | status | compare | resume | verify.

python workflows/ppo_sweep.py submit [--config sweeps/cartpole_ab.yaml]
python workflows/ppo_sweep.py render [--output iteration.yaml] [--workflow RUN_ID]
python workflows/ppo_sweep.py status [SWEEP_OR_RUN_ID]
python workflows/ppo_sweep.py compare SWEEP_ID [--json]
python workflows/ppo_sweep.py resume SWEEP_OR_RUN_ID
python workflows/ppo_sweep.py verify RUN_ID
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

DEFAULT_SWEEP = "sweeps/cartpole_ab.yaml"


def _console() -> Any:
    from rich.console import Console

    # Wide enough for the A/B table when the output is a log file or a pipe.
    return Console() if sys.stdout.isatty() else Console(width=160)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _read_sweep(path: str, overrides: argparse.Namespace) -> Any:
    from ftg_common.config import DQNConfig, SweepError, load_sweep
    from ftg_common.envs.factory import UnknownEnvError, validate_env
    from ftg_common.update.initial import qnet_spec

    p = Path(path)
    if not p.exists() and not p.is_absolute() and (ROOT / p).exists():
        p = ROOT / p
    if not p.exists():
        raise SweepError(f"--config: no such file {path}")
    text = p.read_text()
    sweep = load_sweep(text)
    data = sweep.model_dump(mode="json")
    if overrides.seeds:
        data["seeds"] = [int(s) for s in overrides.seeds.split(",")]
    if overrides.max_parallel:
        data["max_parallel"] = overrides.max_parallel
    if overrides.total_steps:
        data["defaults"] = {**data["defaults"], "total_steps": overrides.total_steps}
        data["configs"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "total_steps"} for k, v in data["configs"].items()
        }
    if overrides.only:
        keep = overrides.only.split(",")
        unknown = [k for k in keep if k not in data["configs"]]
        if unknown:
            raise SweepError(f"--only: unknown config(s) {', '.join(unknown)}")
        data["configs"] = {k: v for k, v in data["configs"].items() if k in keep}
    sweep = load_sweep(json.dumps(data))
    for name, hp in sweep.trial_configs().items():
        try:
            validate_env(hp.env_id, hp.env_kwargs).close()
            if isinstance(hp, DQNConfig):
                qnet_spec(hp)  # DQN needs a Discrete action space: a Box one is refused here, by name
        except UnknownEnvError as exc:
            raise SweepError(f"configs.{name}.env_id: {hp.env_id}: {exc}") from exc
    return sweep


_METRICS_HELP = "serve training metrics (steps/s, returns, iteration time) for Prometheus on this port"


def _serve_metrics(services: Any, port: int | None) -> None:
    """Serve the training metrics on ``port`` for as long as the command runs (nothing if None)."""
    if port is None:
        return
    from workflows.training_metrics import TrainingMetrics

    services.observers.append(TrainingMetrics().serve(port))
    print(f"training metrics: http://127.0.0.1:{port}/metrics", file=sys.stderr)


def cmd_submit(args: argparse.Namespace) -> int:
    """``submit``: run a sweep and print its A/B table; 0 on success, 2 on a bad sweep or failed trials."""
    from ftg_common.config import SweepError
    from ftg_common.settings import get_settings
    from workflows.sweep import SweepFailed, finalize_trials_as_they_finish, open_services, submit

    try:
        sweep = _read_sweep(args.config, args)
    except SweepError as exc:
        return _fail(str(exc))
    if args.sweep_id:
        from ftg_common.ids import InvalidIdError, validate_run_id

        try:
            validate_run_id(args.sweep_id, "--sweep-id")
        except InvalidIdError as exc:
            return _fail(str(exc))
        meta = _open_meta()
        try:
            taken = any(s["sweep_id"] == args.sweep_id for s in meta.list_sweeps())
        finally:
            meta.close()
        if taken:
            return _fail(f"--sweep-id: sweep {args.sweep_id!r} exists; `resume {args.sweep_id}` continues it")
    console = _console()
    services = open_services(get_settings(), tracking=not args.no_tracking)
    _serve_metrics(services, args.metrics_port)
    finalize_trials_as_they_finish(services)
    try:
        sweep_id = submit(sweep, services, console, sweep_id=args.sweep_id)
    except KeyboardInterrupt:
        return 130
    except SweepFailed as exc:
        return _fail(f"some trials failed (the others completed): {exc}")
    finally:
        services.close()
    console.print(f"sweep [bold]{sweep_id}[/bold] finished; `make ui` to compare runs in MLflow")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """``render``: write the WorkflowTemplate YAML, or one iteration's Workflow."""
    import yaml

    from workflows.iteration import iteration_workflow, render_yaml, template_name_for

    if args.workflow:
        from ftg_common.ids import InvalidIdError, validate_run_id

        try:
            validate_run_id(args.workflow, "--workflow")
        except InvalidIdError as exc:
            return _fail(str(exc))
        params = {
            "run-id": args.workflow,
            "iteration": "0",
            "iterations": "1",
            "eval-every": "1",
            "gateway": args.gateway,
            "shards": "[0, 1]",
            "config-digest": "0" * 16,
            "traceparent": "",
        }
        template = template_name_for(args.off_policy)
        text = yaml.safe_dump(iteration_workflow(params, template_name=template), sort_keys=False)
    else:
        text = render_yaml(off_policy=args.off_policy)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _open_meta() -> Any:
    from ftg_common.meta import open_meta
    from ftg_common.settings import get_settings

    return open_meta(get_settings().meta_url, get_settings())


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: every sweep's trials, one sweep's, or one run's record."""
    from rich.table import Table

    from ftg_common.meta.base import RunNotFoundError
    from workflows.driver import RunSummary

    meta = _open_meta()
    console = _console()
    sweeps = {s["sweep_id"]: s for s in meta.list_sweeps()}
    if args.id and args.id not in sweeps:
        try:
            run = meta.get_run(args.id)
        except RunNotFoundError:
            return _fail(f"no sweep or run named {args.id!r}")
        console.print_json(json.dumps(run, default=str))
        return 0
    chosen = [args.id] if args.id else list(sweeps)
    if not chosen:
        console.print("no sweeps yet: `python workflows/ppo_sweep.py submit`")
        return 0
    for sid in chosen:
        t = Table(title=f"sweep {sid}")
        for col in ("run", "config", "seed", "status", "iteration", "env steps", "last eval", "wall s"):
            t.add_column(col)
        for r in meta.list_runs(sid):
            extra = r.get("extra") or {}
            s = RunSummary.from_dict(extra.get("summary"))
            t.add_row(
                r["run_id"],
                str(extra.get("config_name", "")),
                str(extra.get("seed", "")),
                r["status"],
                str(r["last_iteration"] + 1),
                f"{s.steps:,}",
                "-" if s.final_return is None else f"{s.final_return:.1f}",
                f"{s.wall_s:.1f}",
            )
        console.print(t)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``compare``: a sweep's A/B table (``--json`` for the rows as JSON)."""
    from ftg_common.meta.base import RunNotFoundError
    from ftg_common.settings import get_settings
    from workflows.compare import rows_as_dicts, to_rich_table
    from workflows.sweep import comparison, open_services, sweep_cost

    services = open_services(get_settings(), tracking=False, warm=False)
    try:
        try:
            sweep = services.meta.get_sweep(args.sweep)
        except (KeyError, RunNotFoundError):
            return _fail(f"no sweep named {args.sweep!r} (see `status`)")
        trials, table = comparison(services, args.sweep)
        if args.json:
            print(json.dumps(rows_as_dicts(table), indent=2))
        else:
            title = f"A/B comparison — sweep {args.sweep}"
            cost = sweep_cost(services, args.sweep, trials)
            _console().print(to_rich_table(table, sweep.get("threshold"), title, cost))
    finally:
        services.close()
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """``resume``: check the stored state, continue a sweep's or run's unfinished trials, repair MLflow.

    Returns 2, naming every missing or damaged object, when the state a trial needs is lost.
    """
    from ftg_common.meta.base import RunNotFoundError
    from ftg_common.settings import get_settings
    from workflows.sweep import (
        SweepFailed,
        finalize,
        finalize_trials_as_they_finish,
        open_services,
        resume_problems,
        run_trials,
    )

    console = _console()
    meta = _open_meta()
    sweeps = {s["sweep_id"]: s for s in meta.list_sweeps()}
    if args.id in sweeps:
        sweep_id, run_ids = args.id, list(sweeps[args.id].get("runs", []))
    else:
        try:
            run = meta.get_run(args.id)
        except RunNotFoundError:
            return _fail(f"no sweep or run named {args.id!r}")
        sweep_id, run_ids = run["sweep_id"], [args.id]
    meta.close()
    services = open_services(get_settings(), tracking=not args.no_tracking)
    _serve_metrics(services, args.metrics_port)
    try:
        # Before anything runs: lost or damaged state is named, not met as a traceback mid-iteration.
        problems = resume_problems(services, sweep_id, run_ids)
    except Exception:
        services.close()
        raise
    if problems:
        services.close()
        for line in problems:
            print(line, file=sys.stderr)
        return _fail(
            f"cannot resume {args.id}: {len(problems)} object(s) it needs are missing or damaged (listed "
            "above); restore them, or start the sweep again"
        )
    finalize_trials_as_they_finish(services)
    try:
        max_parallel = int(sweeps.get(sweep_id, {}).get("max_parallel", 2))
        run_trials(sweep_id, run_ids, max_parallel, services, console)
        if all(r["status"] == "finished" for r in services.meta.list_runs(sweep_id)):
            finalize(sweep_id, services, console)
    except KeyboardInterrupt:
        return 130
    except SweepFailed as exc:
        return _fail(f"some trials failed: {exc}")
    finally:
        services.close()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``verify``: 0 when every object of the run is intact, 1 naming each damaged key, 2 unknown run."""
    from ftg_common.ids import InvalidIdError
    from ftg_common.meta.base import RunNotFoundError
    from ftg_common.settings import get_settings
    from ftg_common.store import open_store
    from ftg_common.verify import verify_run

    settings = get_settings()
    meta = _open_meta()
    try:
        damaged = verify_run(open_store(settings.store_url, settings), meta, args.run_id)
    except (RunNotFoundError, InvalidIdError) as exc:
        return _fail(str(exc))
    finally:
        meta.close()
    for d in damaged:
        print(f"{d.key}: {d.kind}: {d.reason}")
    if damaged:
        print(f"run {args.run_id}: {len(damaged)} damaged object(s)", file=sys.stderr)
        return 1
    print(f"run {args.run_id}: every object intact")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, one sub-command per command."""
    p = argparse.ArgumentParser(prog="ppo_sweep.py", description="FaaSTrainGym: serverless PPO sweeps")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="run a sweep (configurations x seeds) and print the A/B table")
    s.add_argument("--config", default=DEFAULT_SWEEP, help=f"sweep YAML (default {DEFAULT_SWEEP})")
    s.add_argument("--seeds", help="override seeds, e.g. 0,1")
    s.add_argument("--only", help="run only these configs, e.g. zoo")
    s.add_argument("--total-steps", type=int, help="override total_steps of every config")
    s.add_argument("--max-parallel", type=int, help="override max_parallel")
    s.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    s.add_argument("--sweep-id", help="use this sweep id instead of a new one (it must not exist yet)")
    s.add_argument("--metrics-port", type=int, metavar="PORT", help=_METRICS_HELP)
    s.set_defaults(func=cmd_submit)
    r = sub.add_parser("render", help="write the Argo WorkflowTemplate YAML (or one iteration's Workflow)")
    r.add_argument("--output", "-o")
    r.add_argument("--workflow", metavar="RUN_ID", help="render the per-iteration Workflow for this run id")
    r.add_argument("--gateway", default="http://gateway.openfaas:8080")
    r.add_argument("--off-policy", action="store_true", help="the off-policy (DQN) iteration template")
    r.set_defaults(func=cmd_render)
    st = sub.add_parser("status", help="sweeps and runs, where each stands")
    st.add_argument("id", nargs="?")
    st.set_defaults(func=cmd_status)
    c = sub.add_parser("compare", help="the A/B table of a sweep")
    c.add_argument("sweep")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)
    rs = sub.add_parser(
        "resume", help="continue an interrupted sweep or run from its last committed iteration"
    )
    rs.add_argument("id")
    rs.add_argument("--no-tracking", action="store_true")
    rs.add_argument("--metrics-port", type=int, metavar="PORT", help=_METRICS_HELP)
    rs.set_defaults(func=cmd_resume)
    v = sub.add_parser("verify", help="check every stored object of a run against its content digests")
    v.add_argument("run_id")
    v.set_defaults(func=cmd_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names; its exit code."""
    args = build_parser().parse_args(argv)
    # This process mostly waits on its workers while MLflow's import and model logging run on other
    # threads; with the default 5 ms switch interval every return of the engine's thread from a pipe
    # read can wait that long for the GIL (several times per ~35 ms iteration).
    sys.setswitchinterval(0.0005)
    from ftg_common import tracing

    tracing.configure("ftg-driver")
    try:
        code: int = args.func(args)
    finally:
        tracing.shutdown()  # export the spans still buffered
    return code


def _exit_without_teardown(code: int) -> NoReturn:
    """Exit with ``code`` once the command has closed everything it opened.

    A normal exit then spends ~0.7 s freeing MLflow's, SQLAlchemy's and pydantic's module state object by
    object (measured by benchmarks/bench_startup.py); nothing is left to save by then, so skip it. The
    atexit handlers (logging, multiprocessing clean-up) still run.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_without_teardown(main())
