"""FaaSTrainGym command line: submit | render | status | compare | export | resume | verify.

python workflows/ppo_sweep.py submit [--config sweeps/cartpole_ab.yaml | s3://bucket/key.yaml] [--in-cluster]
python workflows/ppo_sweep.py submit --zoo ppo.yml --env Acrobot-v1 [--shards K] [--accept-unhonoured]
python workflows/ppo_sweep.py render [--output iteration.yaml] [--off-policy] [--chain] [--workflow RUN_ID]
python workflows/ppo_sweep.py status [SWEEP_OR_RUN_ID]
python workflows/ppo_sweep.py compare SWEEP_ID [SWEEP_ID ...] [--json] [--plots DIR] [--require-winner CONFIG]
python workflows/ppo_sweep.py export RUN_ID --format onnx|torchscript|safetensors -o FILE [--version N]
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
    from ftg_common.config import DQNConfig, QLearningConfig, SweepError, load_sweep
    from ftg_common.envs.factory import UnknownEnvError, check_ppo_env, validate_env
    from ftg_common.update.initial import qnet_spec
    from ftg_common.update.qlearning import qtable_spec

    if getattr(overrides, "zoo", None):
        text, base_dir = json.dumps(_zoo_sweep(overrides)), None
    elif path.startswith("s3://"):
        text, base_dir = _read_s3_sweep(path), None
    else:
        p = Path(path)
        if not p.exists() and not p.is_absolute() and (ROOT / p).exists():
            p = ROOT / p
        if not p.exists():
            raise SweepError(f"--config: no such file {path}")
        text, base_dir = p.read_text(), str(p.parent)
    sweep = load_sweep(text, base_dir)
    _report_zoo(sweep)
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
            env = validate_env(hp.env_id, hp.env_kwargs)
            try:
                if isinstance(hp, DQNConfig):
                    qnet_spec(hp)  # DQN needs a Discrete action space: a Box one is refused here, by name
                elif isinstance(hp, QLearningConfig):
                    qtable_spec(hp)  # the table's discretisation: bins, low, high refused here, by name
                else:
                    check_ppo_env(env, hp)  # normalize / use_sde the env's spaces cannot honour
            finally:
                env.close()
        except UnknownEnvError as exc:
            raise SweepError(f"configs.{name}.{exc.field}: {hp.env_id}: {exc}") from exc
    return sweep


def _read_s3_sweep(url: str) -> str:
    """The sweep file at ``s3://bucket/key`` (e.g. one uploaded to MinIO), read with the store's S3 settings.

    Raises:
        ftg_common.config.SweepError: naming ``--config``, when the object cannot be read.
    """
    from urllib.parse import urlsplit

    from botocore.exceptions import BotoCoreError, ClientError

    from ftg_common.config import SweepError
    from ftg_common.settings import get_settings
    from ftg_common.store import open_store
    from ftg_common.store.base import KeyNotFoundError

    parts = urlsplit(url)
    folder, _, name = parts.path.strip("/").rpartition("/")
    if not parts.netloc or not name:
        raise SweepError(f"--config: {url!r} names no object (expected s3://<bucket>/<key>)")
    # Reading a sweep file must not create a bucket: a wrong name is reported instead.
    settings = get_settings().model_copy(update={"s3_create_bucket": False})
    try:
        data = open_store(f"s3://{parts.netloc}/{folder}", settings).get_bytes(name)
    except KeyNotFoundError:
        raise SweepError(f"--config: no such object {url}") from None
    except (OSError, ValueError, ClientError, BotoCoreError) as exc:
        raise SweepError(f"--config: cannot read {url}: {exc}") from exc
    return data.decode()


def _driver_settings(args: argparse.Namespace) -> Any:
    """The settings the driver runs with: as read, or as a pod's (``--in-cluster``, workflows/placement.py).

    Raises:
        workflows.placement.PlacementError: ``--in-cluster`` and the pod's service account is unreadable.
    """
    from ftg_common.settings import get_settings

    if not getattr(args, "in_cluster", False):
        return get_settings()
    from workflows.placement import in_cluster

    return in_cluster(get_settings())


def _zoo_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep ``submit --zoo PATH --env ID`` runs: the Zoo entry as one config, over the seeds."""
    import re

    from ftg_common.config import SweepError

    if not args.env:
        raise SweepError("--env: the Zoo entry to run is required with --zoo (e.g. --env Acrobot-v1)")
    name = re.sub(r"[^a-z0-9-]+", "-", f"zoo-{args.env.lower()}")[:63].strip("-")
    zoo = {
        "file": args.zoo,
        "env": args.env,
        "shards": args.shards,
        "accept_unhonoured": args.accept_unhonoured,
    }
    return {"name": name, "zoo": zoo, "configs": {"zoo": {}}}


def _report_zoo(sweep: Any) -> None:
    """Print what the sweep's Zoo entry could not honour, and what it honours in another form."""
    if sweep.zoo is None:
        return
    from ftg_common.zoo import load_zoo_entry

    entry = load_zoo_entry(sweep.zoo.file, sweep.zoo.env, shards=sweep.zoo.shards)
    for item in entry.unhonoured:
        print(f"zoo: not honoured: {item}", file=sys.stderr)
    for note in entry.adjustments:
        print(f"zoo: adjusted: {note}", file=sys.stderr)


_IN_CLUSTER_HELP = (
    "drive Argo from a pod: its service-account token and CA, the in-cluster Argo server and gateway"
)
_METRICS_HELP = "serve training metrics (steps/s, returns, iteration time) for Prometheus on this port"


def _serve_metrics(services: Any, port: int | None, in_cluster: bool = False) -> None:
    """Serve the training metrics on ``port`` for as long as the command runs (nothing if None).

    On this machine only, or, in a pod (``--in-cluster``), on every interface: Prometheus scrapes the pod's
    IP (manifests/prometheus/scrape-config.yaml).
    """
    if port is None:
        return
    from workflows.training_metrics import TrainingMetrics

    addr = "0.0.0.0" if in_cluster else "127.0.0.1"
    services.observers.append(TrainingMetrics().serve(port, addr))
    print(f"training metrics: http://{addr}:{port}/metrics", file=sys.stderr)


_CHAIN_HELP = (
    "iterations per Workflow, 1-64: chained in one Workflow on Argo (default "
    "FTG_ARGO_ITERATIONS_PER_WORKFLOW), streamed back to back on the embedded engine (default "
    "FTG_LOCAL_ITERATIONS_PER_WORKFLOW)"
)


def _chained(settings: Any, k: int | None) -> Any:
    """``settings`` with ``--iterations-per-workflow K`` applied (unchanged when the flag is absent).

    On Argo, K iterations are chained in one Workflow; on the embedded engine, K iterations are
    streamed back to back (workflows/engines/stream.py).

    Raises:
        ValueError: naming the flag: K is out of range.
    """
    if k is None:
        return settings
    if not 1 <= k <= 64:
        raise ValueError(f"--iterations-per-workflow: {k} is not between 1 and 64")
    field = "argo_iterations_per_workflow" if settings.engine == "argo" else "local_iterations_per_workflow"
    return settings.model_copy(update={field: k})


def cmd_submit(args: argparse.Namespace) -> int:
    """``submit``: run a sweep and print its A/B table; 0 on success, 2 on a bad sweep or failed trials."""
    from ftg_common.config import SweepError
    from workflows.placement import PlacementError
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
    try:
        settings = _chained(_driver_settings(args), args.iterations_per_workflow)
    except (PlacementError, ValueError) as exc:
        return _fail(str(exc))
    console = _console()
    services = open_services(settings, tracking=not args.no_tracking)
    _serve_metrics(services, args.metrics_port, args.in_cluster)
    finalize_trials_as_they_finish(services)
    try:
        sweep_id = submit(sweep, services, console, sweep_id=args.sweep_id)
    except KeyboardInterrupt:
        return 130
    except SweepFailed as exc:
        return _fail(f"some trials failed (the others completed): {exc}")
    finally:
        services.close()
    # On stderr: the sweep's output (stdout) ends with its verdicts.
    print(f"sweep {sweep_id} finished; `make ui` to compare runs in MLflow", file=sys.stderr)
    return 0


_RENDER_CHAIN_HELP = (
    "the chained template (K iterations per Workflow); with --workflow, the Workflow chaining "
    "iterations 0..K-1 (K: --iterations-per-workflow)"
)


def _render_text(args: argparse.Namespace) -> str:
    """The YAML ``render`` writes: a WorkflowTemplate, or a Workflow for ``--workflow RUN_ID``.

    Raises:
        ValueError: naming the flag: a bad run id, K out of range, or K without ``--workflow --chain``.
    """
    import yaml

    from workflows.iteration import iteration_workflow, render_yaml, template_name_for
    from workflows.iteration_chain import (
        MAX_CHAIN,
        chain_template_name_for,
        chain_workflow,
        render_chain_yaml,
    )

    k = args.iterations_per_workflow
    if k is not None and not (args.chain and args.workflow):
        raise ValueError("--iterations-per-workflow: only with --workflow RUN_ID --chain")
    if not args.workflow:
        if args.chain:
            return render_chain_yaml(off_policy=args.off_policy)
        return render_yaml(off_policy=args.off_policy)
    from ftg_common.ids import validate_run_id

    validate_run_id(args.workflow, "--workflow")  # InvalidIdError is a ValueError naming the flag
    k = 2 if k is None else k
    if not 1 <= k <= MAX_CHAIN:
        raise ValueError(f"--iterations-per-workflow: {k} is not between 1 and {MAX_CHAIN}")
    params = {
        "run-id": args.workflow,
        "iterations": str(k if args.chain else 1),
        "eval-every": "1",
        "gateway": args.gateway,
        "shards": "[0, 1]",
        "config-digest": "0" * 16,
        "traceparent": "",
    }
    if args.chain:
        chain = [{**params, "iteration": str(i)} for i in range(k)]
        workflow = chain_workflow(chain, template_name=chain_template_name_for(args.off_policy))
    else:
        workflow = iteration_workflow(
            {**params, "iteration": "0"}, template_name=template_name_for(args.off_policy)
        )
    return str(yaml.safe_dump(workflow, sort_keys=False))


def cmd_render(args: argparse.Namespace) -> int:
    """``render``: write a WorkflowTemplate's YAML (one-iteration or chained), or a Workflow's."""
    try:
        text = _render_text(args)
    except ValueError as exc:
        return _fail(str(exc))
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
    """``compare``: the A/B table of one sweep, or of the configurations of several, and its verdicts.

    ``--json`` prints ``{"sweeps", "configs" (the table's rows), "probability_of_improvement",
    "sample_efficiency"}``; ``--plots DIR`` writes the pictures; ``--require-winner CONFIG`` exits 1
    unless CONFIG beats every other configuration (a CI gate). 2: unknown sweep or configuration.
    """
    from dataclasses import replace

    from ftg_common.meta.base import RunNotFoundError
    from ftg_common.settings import get_settings
    from workflows.ab import (
        ComparisonError,
        decide_trials,
        merge_sweeps,
        print_report,
        require_winner,
        trial_evidence,
        write_plots,
    )
    from workflows.compare import compare, rows_as_dicts, to_rich_table
    from workflows.sweep import open_services, sweep_cost, trial_rows

    sweep_ids = list(dict.fromkeys(args.sweep))
    services = open_services(get_settings(), tracking=False, warm=False)
    try:
        sweeps = {}
        for sid in sweep_ids:
            try:
                sweeps[sid] = services.meta.get_sweep(sid)
            except (KeyError, RunNotFoundError):
                return _fail(f"no sweep named {sid!r} (see `status`)")
        try:
            evidence, names = merge_sweeps(
                {sid: trial_evidence(services.store, services.meta, sid) for sid in sweep_ids}
            )
        except ComparisonError as exc:
            return _fail(f"cannot compare {' and '.join(sweep_ids)}: {exc}")
        # The table's rows under the same (possibly sweep-qualified) names as the statistics'.
        trials = [
            replace(t, config=names.get((sid, t.config), t.config))
            for sid in sweep_ids
            for t in trial_rows(services, sid)
        ]
        st = services.settings
        table = compare(trials, st.faas_usd_per_gb_second, st.dedicated_server_usd_per_hour)
        report = decide_trials(evidence)
        threshold = sweeps[sweep_ids[0]].get("threshold")
        label = " vs ".join(sweep_ids)
        gate: tuple[bool, list[str]] | None = None
        if args.require_winner:
            try:
                gate = require_winner(report, args.require_winner)
            except ComparisonError as exc:
                return _fail(str(exc))
        plots = write_plots(evidence, report, args.plots, threshold, title=label) if args.plots else []
        if args.json:
            out = {"sweeps": sweep_ids, "configs": rows_as_dicts(table), **report.as_dict()}
            print(json.dumps(out, indent=2))
        else:
            # One sweep's runtime cost (idle GB-s, cold starts) is measured per sweep: none for several.
            cost = sweep_cost(services, sweep_ids[0], trials) if len(sweep_ids) == 1 else None
            console = _console()
            console.print(to_rich_table(table, threshold, f"A/B comparison — sweep {label}", cost))
            print_report(console, report)
        for path in plots:
            print(f"wrote {path}", file=sys.stderr)
        if gate is not None:
            passed, lines = gate
            verdicts = "; ".join(lines)
            if not passed:
                print(f"gate failed: {args.require_winner} is not better: {verdicts}", file=sys.stderr)
                return 1
            print(f"gate passed: {verdicts}", file=sys.stderr)
    finally:
        services.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``export``: write a run's deterministic policy as ONNX, TorchScript or safetensors; 2 on bad input."""
    from ftg_common.errors import CorruptObjectError
    from ftg_common.ids import InvalidIdError, validate_run_id
    from ftg_common.settings import get_settings
    from ftg_common.store import open_store

    try:
        validate_run_id(args.run_id, "RUN_ID")
    except InvalidIdError as exc:
        return _fail(str(exc))
    if args.version is not None and args.version < 1:
        return _fail(
            f"--version: {args.version}: a trained policy version is 1 or more (0 is the initial one)"
        )
    import workflows.export as export  # here: it imports torch (seconds), which no other command needs

    settings = get_settings()
    meta = _open_meta()
    try:
        store = open_store(settings.store_url, settings)
        if args.version is None:
            path, version = export.export_final_policy(store, meta, args.run_id, args.format, args.output)
        else:
            version = args.version
            path = export.export_policy(store, args.run_id, version, args.format, args.output)
    except ValueError as exc:
        return _fail(f"RUN_ID: {exc}" if args.version is None else f"--version: {exc}")
    except CorruptObjectError as exc:
        return _fail(f"RUN_ID: {args.run_id}: the stored policy is damaged: {exc}")
    except OSError as exc:  # e.g. -o names a folder, or one that cannot be written
        return _fail(f"-o: {args.output}: {exc.strerror or exc}")
    finally:
        meta.close()
    print(f"wrote {path} (run {args.run_id}, policy version {version}, {args.format})", file=sys.stderr)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """``resume``: check the stored state, continue a sweep's or run's unfinished trials, repair MLflow.

    Returns 2, naming every missing or damaged object, when the state a trial needs is lost.
    """
    from ftg_common.meta.base import RunNotFoundError
    from workflows.placement import PlacementError
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
    try:
        settings = _chained(_driver_settings(args), args.iterations_per_workflow)
    except (PlacementError, ValueError) as exc:
        return _fail(str(exc))
    services = open_services(settings, tracking=not args.no_tracking)
    _serve_metrics(services, args.metrics_port, args.in_cluster)
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
    s.add_argument(
        "--config",
        default=DEFAULT_SWEEP,
        help=f"sweep YAML: a path or s3://bucket/key (default {DEFAULT_SWEEP})",
    )
    s.add_argument("--seeds", help="override seeds, e.g. 0,1")
    s.add_argument("--only", help="run only these configs, e.g. zoo")
    s.add_argument("--total-steps", type=int, help="override total_steps of every config")
    s.add_argument("--max-parallel", type=int, help="override max_parallel")
    s.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    s.add_argument("--sweep-id", help="use this sweep id instead of a new one (it must not exist yet)")
    s.add_argument("--in-cluster", action="store_true", help=_IN_CLUSTER_HELP)
    s.add_argument("--iterations-per-workflow", type=int, metavar="K", help=_CHAIN_HELP)
    s.add_argument("--metrics-port", type=int, metavar="PORT", help=_METRICS_HELP)
    s.add_argument("--zoo", metavar="PATH", help="run an RL Zoo ppo.yml entry as it is (with --env)")
    s.add_argument("--env", metavar="ENV_ID", help="the Zoo entry to run, e.g. Acrobot-v1")
    s.add_argument("--shards", type=int, help="rollout-collector invocations per iteration (Zoo entries)")
    s.add_argument(
        "--accept-unhonoured", action="store_true", help="run a Zoo entry even with items it cannot honour"
    )
    s.set_defaults(func=cmd_submit)
    r = sub.add_parser("render", help="write the Argo WorkflowTemplate YAML (or one iteration's Workflow)")
    r.add_argument("--output", "-o")
    r.add_argument("--workflow", metavar="RUN_ID", help="render the per-iteration Workflow for this run id")
    r.add_argument("--gateway", default="http://gateway.openfaas:8080")
    r.add_argument("--off-policy", action="store_true", help="the off-policy (DQN) iteration template")
    r.add_argument("--chain", action="store_true", help=_RENDER_CHAIN_HELP)
    r.add_argument(
        "--iterations-per-workflow", type=int, metavar="K", help="with --workflow --chain: K (default 2)"
    )
    r.set_defaults(func=cmd_render)
    st = sub.add_parser("status", help="sweeps and runs, where each stands")
    st.add_argument("id", nargs="?")
    st.set_defaults(func=cmd_status)
    c = sub.add_parser("compare", help="the A/B table of a sweep (or of several) and its verdicts")
    c.add_argument(
        "sweep", nargs="+", metavar="SWEEP", help="a sweep id; several: compare their configurations"
    )
    c.add_argument("--json", action="store_true", help="the table, verdicts and sample efficiency as JSON")
    c.add_argument("--plots", metavar="DIR", help="write the learning curves and other pictures as PNG here")
    c.add_argument(
        "--require-winner", metavar="CONFIG", help="exit 1 unless CONFIG beats every other configuration"
    )
    c.set_defaults(func=cmd_compare)
    e = sub.add_parser("export", help="write a run's policy as ONNX, TorchScript or safetensors")
    e.add_argument("run_id", metavar="RUN_ID")
    e.add_argument("--format", required=True, choices=("onnx", "torchscript", "safetensors"))
    e.add_argument("-o", "--output", required=True, metavar="FILE")
    e.add_argument("--version", type=int, help="policy version (default: the run's last committed one)")
    e.set_defaults(func=cmd_export)
    rs = sub.add_parser(
        "resume", help="continue an interrupted sweep or run from its last committed iteration"
    )
    rs.add_argument("id")
    rs.add_argument("--no-tracking", action="store_true")
    rs.add_argument("--in-cluster", action="store_true", help=_IN_CLUSTER_HELP)
    rs.add_argument("--iterations-per-workflow", type=int, metavar="K", help=_CHAIN_HELP)
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
