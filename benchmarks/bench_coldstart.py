"""Cold start of each function: a new process -> its first answer, with the breakdown.

    python benchmarks/bench_coldstart.py [--runs 7] [--functions rollout-collector,...]
        [--roots before=/path/to/old/checkout,after=.] [--suffix S] [--notes "..."]

For each of the four functions and each run, a fresh interpreter starts the function's serving entry
point, ``python -m functions.serve --port 0`` (what the local gateway starts as a replica and the image
runs behind the of-watchdog), and the first real request is POSTed to the port it announces. A small
launcher (:data:`LAUNCHER`) marks the clock, imports ``functions.serve`` and calls ``_handler()`` exactly as
``main()`` would, wraps the handler's steps with timers, then runs ``functions.serve`` as ``__main__``
(an entry point without a port option is replaced by the same steps on a free port). Before the runs the
checkouts' own modules are byte-compiled, as in a developer's checkout or an image built with
``compileall``: with ``PYTHONDONTWRITEBYTECODE`` set and no ``__pycache__``, every cold start would compile
them again (about 35 ms more here). Reported per function (medians over runs):

- interpreter: spawn -> the launcher's first line (interpreter, ``site``, the editable-install finder);
- imports: ``import functions.serve`` (catalog, adapter, settings) and ``_handler()`` (the handler module
  and everything it imports); their sum is "imports";
- server: the rest of ``main()``: argument parsing, importing waitress, binding, announcing the port;
- first call: the first request as the client sees it (send -> full answer), and inside the process the
  adapter's time (``faas.invoke``: parse, context, work, rendering), split into the handler's own steps
  (parse and validate, run context, store reads, env creation, the work, writes) by timing wrappers
  around the handler module's functions;
- total: spawn -> the first answer received;
- warm call: a second identical request to the same process (for idempotent functions), so the first
  call's excess over a warm one is visible.

``python -X importtime`` is run for each function's import path, and the biggest costs are listed by
top-level package and by module (self time, median over three runs).

The run every request refers to is prepared once in a temporary file store + SQLite metadata store with
the project's test helpers (frozen default config, run record, policy version 0, one iteration collected,
aggregated, updated); each policy-updater run gets a run of its own whose iteration 0 is aggregated but
not yet updated, so every measured update does the full work. Several checkouts (``--roots``) are measured
interleaved run by run against the same stores, so before/after figures share the machine's load.
Results go to ``benchmarks/results/<date>-coldstart[-suffix].{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import results_io  # a sibling of this script
from machine_info import machine_info  # a sibling of this script

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("rollout-collector", "reward-aggregator", "policy-updater", "policy-evaluator")
TARGET_S = {"rollout-collector": 0.300}
START_TIMEOUT_S = 60.0
READY_PREFIX = "listening on http://"  # what functions/serve.py prints once it listens
# Re-running these with the same body does the same work again (idempotent rewrite); the updater's second
# call finds its iteration committed and answers the stored result, which says nothing about warm cost.
WARM_REPEATABLE = frozenset({"rollout-collector", "reward-aggregator", "policy-evaluator"})

# What the child runs (``python -c``): serve.py's ``__main__`` path on an ephemeral port, with clocks.
# ``time.monotonic`` is CLOCK_MONOTONIC on Linux, one clock for every process of the machine, so the
# child's marks compare with the parent's spawn time. Kept free of project imports before the marks.
LAUNCHER = r"""
import time
t_start = time.monotonic()
import json, sys
import functions.serve as serve
t_serve = time.monotonic()
serve._handler()
t_handler = time.monotonic()
phases = {}
def timed(name, fn):
    def wrapper(*args, **kwargs):
        phases.setdefault(name, 0.0)  # listed in the order the steps start
        t = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] += time.monotonic() - t
    return wrapper
# Time the handler's own steps: every project function the handler module calls by name (and those of
# the project modules it calls through), the adapter's parse and context, the clients opened once per
# process, and the builders of warm pools.
import ftg_common.faas as faas, ftg_common.runtime as runtime
handler_name = next(m for m in sys.modules if m.startswith("functions.") and m.endswith(".handler"))
handler_module = sys.modules[handler_name]
for attr, value in list(vars(handler_module).items()):
    if not callable(value) or isinstance(value, type) or attr == "handle":
        continue
    where = getattr(value, "__module__", "") or ""
    if where == handler_name:
        setattr(handler_module, attr, timed(f"work ({attr})", value))
    elif where.startswith("ftg_common") and where != "ftg_common.faas":
        setattr(handler_module, attr, timed(f"  {attr}", value))
for attr, module in list(vars(handler_module).items()):
    if type(module) is not type(sys) or attr in ("faas", "layout"):
        continue
    if module.__name__.startswith("ftg_common."):
        for fn_name, fn in list(vars(module).items()):
            if callable(fn) and not isinstance(fn, type) and getattr(fn, "__module__", "") == module.__name__:
                setattr(module, fn_name, timed(f"  {attr}.{fn_name}", fn))
faas._parse = timed("faas._parse (body -> request model)", faas._parse)
runtime.context_for = timed("runtime.context_for (config, clients)", runtime.context_for)
for attr in ("store", "meta", "_cached_config"):
    setattr(runtime, attr, timed(f"  runtime.{attr}", getattr(runtime, attr)))
faas.render_response = timed("faas.render_response", faas.render_response)
from ftg_common.warm import WarmPool
for name, module in list(sys.modules.items()):
    if name.startswith("ftg_common"):
        for attr, value in list(vars(module).items()):
            if isinstance(value, WarmPool):
                value._factory = timed(f"  {name.rsplit('.', 1)[-1]}.{attr} build (envs)", value._factory)
invoke = faas.invoke
def timed_invoke(*args, **kwargs):
    before = set(sys.modules)
    phases.clear()
    t = time.monotonic()
    resp = invoke(*args, **kwargs)
    seconds = time.monotonic() - t
    added = set(sys.modules) - before
    # The roots of what the call imported (``sqlite3``, not also ``sqlite3.dbapi2``).
    new = sorted(m for m in added if m.rpartition(".")[0] not in added)
    print("CALL " + json.dumps({"app_s": seconds, "phases": dict(phases), "new_modules": new}), flush=True)
    return resp
faas.invoke = timed_invoke
print("MARKS " + json.dumps({
    "t_start": t_start, "t_serve": t_serve, "t_handler": t_handler, "serve_file": serve.__file__,
    "modules": len(sys.modules),
}), flush=True)
if hasattr(serve, "main"):
    # The entry point itself (``python -m functions.serve --port 0``): it imports waitress, binds a free
    # port and announces it; its own ``_handler()`` finds the handler module imported.
    import runpy
    sys.argv = ["functions/serve.py", "--port", "0"]
    runpy.run_module("functions.serve", run_name="__main__", alter_sys=True)
else:  # an entry point with a fixed port: the same steps on a free one
    from waitress.server import create_server
    server = create_server(serve.app, host="127.0.0.1", port=0)
    print(f"listening on http://127.0.0.1:{server.effective_port}", flush=True)
    server.run()
"""

IMPORT_ONLY = "import functions.serve as s; s._handler()"


# --------------------------------------------------------------------------- preparing the runs


def _prepare_shared(run_id: str) -> dict[str, dict[str, Any]]:
    """A run with iteration 0 done (collected, aggregated, updated): a valid first request per function."""
    from tests.funcs import iterate, new_run

    cfg = new_run(run_id)
    out = iterate(cfg, 0)
    ref = {"run_id": run_id, "iteration": 0, "config_digest": cfg.digest()}
    return {
        "rollout-collector": {**ref, "shard": 0},
        "reward-aggregator": {**ref, "shards": out["shards"]},
        "policy-evaluator": {**ref},
    }


def _prepare_update(run_id: str) -> dict[str, Any]:
    """A run whose iteration 0 is aggregated but not updated: the body of a full policy update."""
    from tests.funcs import collect_and_aggregate, new_run, request_ref

    cfg = new_run(run_id)
    ref = request_ref(cfg, 0)
    _, aggregate = collect_and_aggregate(cfg, ref)
    return {**ref, "batch": aggregate}


# --------------------------------------------------------------------------- one cold start


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=START_TIMEOUT_S)
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@contextlib.contextmanager
def _child(
    argv: list[str],
    root: Path,
    env: dict[str, str],
    stderr: Any,
    kill_after_s: float,
    stop_wait_s: float = 10,
) -> Iterator[subprocess.Popen[str]]:
    """A child process in checkout ``root``, its stdout a text pipe; stopped (SIGTERM) when the block ends.

    A watchdog kills it if it still runs ``kill_after_s`` after the start, so a child that never prints
    what the block reads cannot hang the benchmark.
    """
    proc = subprocess.Popen(
        argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    watchdog = threading.Timer(kill_after_s, proc.kill)
    watchdog.start()
    try:
        yield proc
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=stop_wait_s)


def _read_tagged(proc: subprocess.Popen[str], tag: str) -> tuple[str, float]:
    """The rest of the first stdout line starting with ``tag`` and when it was read."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(tag):
            return line[len(tag) :].strip(), time.monotonic()
    raise RuntimeError(f"the function process exited before printing {tag!r} (exit {proc.wait()})")


def cold_start(root: Path, env: dict[str, str], function: str, body: dict[str, Any]) -> dict[str, Any]:
    """Start ``function`` in a new process in checkout ``root``, POST ``body``; the phases in seconds."""
    raw = json.dumps(body).encode()
    child_env = {**env, "FTG_FUNCTION": function}
    spawned = time.monotonic()
    with _child(
        [sys.executable, "-c", LAUNCHER], root, child_env, subprocess.DEVNULL, START_TIMEOUT_S
    ) as proc:
        marks = json.loads(_read_tagged(proc, "MARKS ")[0])
        address, listening = _read_tagged(proc, READY_PREFIX)
        port = int(address.rpartition(":")[2])
        sent = time.monotonic()
        status, answer = _post(port, raw)
        answered = time.monotonic()
        if status != 200:
            raise RuntimeError(f"{function} answered {status}: {answer[:500]!r}")
        first = json.loads(_read_tagged(proc, "CALL ")[0])
        warm: dict[str, Any] | None = None
        if function in WARM_REPEATABLE:
            t = time.monotonic()
            status, answer = _post(port, raw)
            warm = {"client_s": time.monotonic() - t, **json.loads(_read_tagged(proc, "CALL ")[0])}
    if not Path(marks["serve_file"]).resolve().is_relative_to(root):
        raise RuntimeError(f"the child imported {marks['serve_file']}, not the checkout {root}")
    return {
        "interpreter_s": marks["t_start"] - spawned,
        "import_serve_s": marks["t_serve"] - marks["t_start"],
        "import_handler_s": marks["t_handler"] - marks["t_serve"],
        "imports_s": marks["t_handler"] - marks["t_start"],
        "server_s": listening - marks["t_handler"],
        "ready_s": listening - spawned,
        "first_call_client_s": answered - sent,
        "first_call_app_s": first["app_s"],
        "first_call_phases": first["phases"],
        "first_call_new_modules": first["new_modules"],
        "total_s": answered - spawned,
        "warm_call_client_s": None if warm is None else warm["client_s"],
        "warm_call_app_s": None if warm is None else warm["app_s"],
        "modules_at_ready": marks["modules"],
    }


# --------------------------------------------------------------------------- instructions (valgrind)

_COLLECTED = re.compile(r"Collected : (\d+)")
_VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
_IDLE_CHILD = "print('up', flush=True); import time; time.sleep(600)"


def _instructions(
    root: Path, env: dict[str, str], code: str, until: str, request: tuple[str, bytes] | None = None
) -> int:
    """User-space instructions a child runs (``python -c code`` under callgrind) until it is stopped.

    The child is stopped (SIGTERM, which callgrind reports like an exit) once it printed ``until``, or,
    with ``request`` (function, body), once it answered that request and reported the call. Unlike
    seconds these counts do not depend on what else the machine is doing, so they compare checkouts
    on a shared machine; they count neither the kernel's work nor waiting for the disk.
    """
    with tempfile.TemporaryFile("w+") as err:
        # callgrind runs ~50x slower
        argv = [*_VALGRIND, sys.executable, "-c", code]
        with _child(argv, root, env, err, START_TIMEOUT_S * 20, stop_wait_s=60) as proc:
            address, _ = _read_tagged(proc, until)
            if request is not None:
                status, answer = _post(int(address.rpartition(":")[2]), request[1])
                if status != 200:
                    raise RuntimeError(f"{request[0]} answered {status}: {answer[:500]!r}")
                _read_tagged(proc, "CALL ")
        err.seek(0)
        found = _COLLECTED.search(err.read())
    if found is None:
        raise RuntimeError("callgrind reported no instruction count")
    return int(found.group(1))


def instructions(root: Path, env: dict[str, str], function: str, body: dict[str, Any]) -> dict[str, int]:
    """Instructions of an idle interpreter, of a cold start up to listening, and up to the first answer."""
    child_env = {**env, "FTG_FUNCTION": function}
    interpreter = _instructions(root, child_env, _IDLE_CHILD, "up")
    ready = _instructions(root, child_env, LAUNCHER, READY_PREFIX)
    answered = _instructions(root, child_env, LAUNCHER, READY_PREFIX, (function, json.dumps(body).encode()))
    return {
        "interpreter": interpreter,
        "imports_and_server": ready - interpreter,
        "first_call": answered - ready,
        "total": answered,
    }


# --------------------------------------------------------------------------- -X importtime


_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(root: Path, env: dict[str, str], function: str, repeats: int = 3) -> dict[str, Any]:
    """Self time by top-level package and by module (ms, medians over ``repeats``) of the import path."""
    by_package: dict[str, list[float]] = {}
    by_module: dict[str, list[float]] = {}
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", IMPORT_ONLY],
            cwd=root,
            env={**env, "FTG_FUNCTION": function},
            capture_output=True,
            text=True,
            check=True,
        )
        packages: dict[str, float] = {}
        for line in proc.stderr.splitlines():
            m = _IMPORTTIME.match(line)
            if not m:
                continue
            self_ms, name = int(m.group(1)) / 1000, m.group(4)
            packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0.0) + self_ms
            by_module.setdefault(name, []).append(self_ms)
        for name, ms in packages.items():
            by_package.setdefault(name, []).append(ms)

    def medians(table: dict[str, list[float]]) -> dict[str, float]:
        # A module missing from some runs counts 0 there (it was imported by an earlier one).
        rows = {k: statistics.median(v + [0.0] * (repeats - len(v))) for k, v in table.items()}
        return dict(sorted(rows.items(), key=lambda kv: -kv[1]))

    packages_ms = medians(by_package)
    return {
        "total_ms": round(sum(packages_ms.values()), 1),
        "packages_ms": {k: round(v, 1) for k, v in list(packages_ms.items())[:12]},
        "modules_ms": {k: round(v, 1) for k, v in list(medians(by_module).items())[:12]},
    }


# --------------------------------------------------------------------------- summary and report


def _median(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


SCALARS = (
    ("interpreter", "interpreter_s"),
    ("imports", "imports_s"),
    ("  import functions.serve", "import_serve_s"),
    ("  _handler() (handler module)", "import_handler_s"),
    ("server (rest of main(): waitress, bind)", "server_s"),
    ("ready to serve (spawn -> listening)", "ready_s"),
    ("first call (client: send -> answer)", "first_call_client_s"),
    ("  first call inside the process", "first_call_app_s"),
    ("**total: new process -> first answer**", "total_s"),
    ("warm call (same body again, client)", "warm_call_client_s"),
)


INSTRUCTION_ROWS = (
    ("instructions (valgrind): interpreter", "interpreter"),
    ("instructions: imports and server", "imports_and_server"),
    ("instructions: first call", "first_call"),
    ("**instructions: total**", "total"),
)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {key: _median([r[key] for r in runs]) for _, key in SCALARS}
    out["total_min_s"] = min(r["total_s"] for r in runs)
    out["total_max_s"] = max(r["total_s"] for r in runs)
    names = list(dict.fromkeys(n for r in runs for n in r["first_call_phases"]))
    out["first_call_phases"] = {n: _median([r["first_call_phases"].get(n) for r in runs]) for n in names}
    out["first_call_new_modules"] = runs[-1]["first_call_new_modules"]
    out["modules_at_ready"] = runs[-1]["modules_at_ready"]
    return out


def to_markdown(record: dict[str, Any]) -> str:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:.0f}"

    labels = list(record["roots"])
    lines = [
        f"# Function cold starts: new process -> first answer ({record['date']})",
        "",
        results_io.checkout_sentence(record)
        + f"{record['runs']} timed runs per function and checkout after one untimed "
        f"run{', checkouts interleaved run by run' if len(labels) > 1 else ''}; medians, in milliseconds. "
        f"Each request is the function's first real request for the default PPO config "
        f"({record['request']}). Target: rollout-collector total <= "
        f"{TARGET_S['rollout-collector'] * 1000:.0f} ms.",
        "",
    ]
    for function in record["functions"]:
        per = {label: record["results"][label][function]["summary"] for label in labels}
        lines += [f"## {function}", "", "| ms | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for label_text, key in SCALARS:
            lines.append(f"| {label_text} | " + " | ".join(ms(per[lb][key]) for lb in labels) + " |")
        lines.append(
            "| total, min-max over runs | "
            + " | ".join(f"{ms(per[lb]['total_min_s'])}-{ms(per[lb]['total_max_s'])}" for lb in labels)
            + " |"
        )
        if all("instructions" in record["results"][lb][function] for lb in labels):
            counts = {lb: record["results"][lb][function]["instructions"] for lb in labels}
            for label_text, key in INSTRUCTION_ROWS:
                cells = [f"{counts[lb][key] / 1e6:.0f} M" for lb in labels]
                lines.append(f"| {label_text} | " + " | ".join(cells) + " |")
        lines.append(
            "| modules loaded when ready | "
            + " | ".join(str(per[lb]["modules_at_ready"]) for lb in labels)
            + " |"
        )
        lines += ["", "First call inside the process, by step (indented steps run inside the one above):", ""]
        lines += ["| ms | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        names = list(dict.fromkeys(n for lb in labels for n in per[lb]["first_call_phases"]))
        for name in names:
            if all((per[lb]["first_call_phases"].get(name) or 0.0) < 0.0005 for lb in labels):
                continue  # under half a millisecond everywhere (or a context manager's construction)
            cells = [ms(per[lb]["first_call_phases"].get(name)) for lb in labels]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append(
            "| modules first imported by the call | "
            + " | ".join(", ".join(per[lb]["first_call_new_modules"]) or "-" for lb in labels)
            + " |"
        )
        for label in labels:
            it = record["results"][label][function]["importtime"]
            pk = ", ".join(f"{k} {v:.0f}" for k, v in it["packages_ms"].items())
            mods = ", ".join(f"{k} {v:.0f}" for k, v in list(it["modules_ms"].items())[:8])
            lines += [
                "",
                f"`-X importtime` ({label}), self ms, sum {it['total_ms']:.0f}: by package: {pk}. "
                f"Top modules: {mods}.",
            ]
        lines.append("")
    if record.get("notes"):
        lines += [record["notes"], ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed cold starts per function and checkout")
    ap.add_argument("--functions", default=",".join(FUNCTIONS))
    results_io.add_roots_argument(ap, ROOT)
    ap.add_argument(
        "--prepare-with",
        default=str(ROOT),
        help="the checkout whose test helpers prepare the runs (default: this one)",
    )
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="also count each cold start's instructions under valgrind (load-independent; minutes)",
    )
    results_io.add_output_arguments(ap, notes="a paragraph")
    ap.add_argument(
        "--revisions",
        default="",
        help="LABEL=TEXT;LABEL=TEXT: what a root that is not a git checkout (a snapshot) holds",
    )
    args = ap.parse_args()
    functions = [f for f in args.functions.split(",") if f]
    described = dict(part.split("=", 1) for part in args.revisions.split(";") if "=" in part)
    roots = results_io.parse_roots(args.roots)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="ftg-coldstart-"))
    # One thread per process, as the function images run (OMP_NUM_THREADS in functions/stack.yml).
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTG_")}
    env.update(
        FTG_STORE_URL=f"file://{work}/store",
        FTG_META_URL=f"sqlite:///{work}/meta.db",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    os.environ.update({k: env[k] for k in ("FTG_STORE_URL", "FTG_META_URL", "OMP_NUM_THREADS")})
    os.environ["FTG_LOCAL_WORKERS"] = "0"
    sys.path.insert(0, str(Path(args.prepare_with).resolve()))
    results: dict[str, dict[str, Any]] = {label: {} for label in roots}
    for root in roots.values():
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "ftg_common", "functions"], cwd=root, check=True
        )
    try:
        bodies = _prepare_shared("coldstart")
        for function in functions:
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in roots}
            for i in range(-1, args.runs):  # run -1 is untimed: writes .pyc files, warms the page cache
                for label, root in roots.items():
                    body = (
                        _prepare_update(f"coldstart-update-{label}-{i + 1}")
                        if function == "policy-updater"
                        else bodies[function]
                    )
                    r = cold_start(root, env, function, body)
                    if i >= 0:
                        runs[label].append(r)
                        print(
                            f"{function} {label} run {i}: total {r['total_s'] * 1000:.0f} ms (interpreter "
                            f"{r['interpreter_s'] * 1000:.0f}, imports {r['imports_s'] * 1000:.0f}, server "
                            f"{r['server_s'] * 1000:.0f}, first call {r['first_call_client_s'] * 1000:.0f})",
                            flush=True,
                        )
            for label, root in roots.items():
                results[label][function] = {
                    "summary": summarise(runs[label]),
                    "runs": runs[label],
                    "importtime": importtime(root, env, function),
                }
                if args.instructions:
                    body = (
                        _prepare_update(f"coldstart-update-{label}-instructions")
                        if function == "policy-updater"
                        else bodies[function]
                    )
                    counts = instructions(root, env, function, body)
                    results[label][function]["instructions"] = counts
                    print(f"{function} {label} instructions: {counts}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = results_io.checkout_record(
        {**machine_info(load_before), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        roots,
        args.notes,
        revisions=described,
        functions=functions,
        runs=args.runs,
        request="CartPole-v1, 8 envs in 2 shards, 32 steps per env: the collector steps 4 envs x 32, "
        "the aggregator reads 2 shards, the updater runs 20 epochs on 256 transitions, the evaluator "
        "plays 10 episodes",
        results=results,
    )
    results_io.publish(args.out, "coldstart", record, to_markdown(record), suffix=args.suffix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
