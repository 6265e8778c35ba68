"""The local gateway's per-call overhead and each function's cold start.

    python benchmarks/bench_gateway.py [--calls 2000] [--repeats 5] [--json out.json]

Per-call overhead: the gateway runs as its own process (``python -m workflows.gateway.server``), one
replica of ``rollout-collector`` is warmed, then ``--calls`` sequential POSTs with a small body (``{}``,
which the handler refuses with 400 after validation: no collection work) go over one keep-alive
connection, through the gateway and, for comparison, straight to a replica started the same way. The
overhead is the difference.

Cold start, per function, ``--repeats`` times each, in fresh processes:

* ``interpreter``: ``python -c pass``, start to exit;
* ``imports``: the handler's imports, timed inside a fresh interpreter (``functions.serve._handler()``);
* ``ready``: ``python -m functions.serve --port 0`` from process start to its health check answered;
* ``first answer``: to the first call answered (a ``{}`` body), i.e. ready plus the first call;
* ``through the gateway``: ``X-Cold-Start-Seconds`` of a call to a function scaled to zero.

Nothing here asserts a figure; it prints them (and writes them as JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine_info import machine_info  # noqa: E402
from functions.serve import HEALTH_PATH, READY_PREFIX  # noqa: E402
from workflows.gateway.auth import BasicAuth  # noqa: E402
from workflows.gateway.stack import load  # noqa: E402

FUNCTIONS = list(load())
PASSWORD = "bench-gateway"
SMALL_BODY = b"{}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1e3, 3),
        "p99_ms": round(percentile(values, 99) * 1e3, 3),
        "mean_ms": round(statistics.fmean(values) * 1e3, 3),
        "n": len(values),
    }


def env_for(function: str | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if function is not None:
        env["FTG_FUNCTION"] = function
    return env


@contextmanager
def announcing(
    args: list[str],
    what: str,
    ready: Callable[[str], bool],
    stop: Callable[[subprocess.Popen[str]], None],
    **popen: Any,
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A server process that announces its port on its first stdout line; yields (process, port).

    Args:
        args: the command.
        what: the server's name, for the error when it does not start.
        ready: whether the first line is the announcement.
        stop: how the process is ended on leaving.
        **popen: further ``subprocess.Popen`` arguments (``env``, ``cwd``, ``stdin``).
    """
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **popen)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not ready(line):
            raise RuntimeError(f"{what} did not start: {line!r}")
        yield proc, int(line.strip().rsplit(":", 1)[1])
    finally:
        stop(proc)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()


def _terminate(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


@contextmanager
def replica(function: str) -> Iterator[tuple[subprocess.Popen[str], int, float]]:
    """A replica as the gateway starts one; yields (process, port, seconds from start to ready)."""
    started = time.perf_counter()
    with announcing(
        [sys.executable, "-m", "functions.serve", "--port", "0", "--threads", "2", "--exit-with-stdin"],
        f"{function} replica",
        lambda line: line.startswith(READY_PREFIX),
        _kill,
        env=env_for(function),
        stdin=subprocess.PIPE,
    ) as (proc, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", HEALTH_PATH)
        conn.getresponse().read()
        conn.close()
        yield proc, port, time.perf_counter() - started


def post(conn: http.client.HTTPConnection, path: str, body: bytes = SMALL_BODY) -> tuple[int, dict[str, str]]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status, dict(resp.getheaders())


def timed_calls(port: int, path: str, calls: int, warmup: int = 50) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(warmup):
            post(conn, path)
        out = []
        for _ in range(calls):
            t0 = time.perf_counter()
            post(conn, path)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        conn.close()


@contextmanager
def gateway(tmp: Path) -> Iterator[int]:
    """The gateway as a process (as ``make gateway`` runs it) on a free port; yields the port."""
    env = env_for(
        FTG_GATEWAY_PASSWORD=PASSWORD,
        FTG_STORE_URL=f"file://{tmp}/store",
        FTG_META_URL=f"sqlite:///{tmp}/meta.db",
    )
    with announcing(
        [sys.executable, "-m", "workflows.gateway.server", "--port", "0"],
        "gateway",
        lambda line: "http://" in line,
        _terminate,
        cwd=tmp,
        env=env,
    ) as (_, port):
        yield port


def system(port: int, method: str, path: str, body: Any = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = b"" if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Authorization": BasicAuth(PASSWORD).header()})
        resp = conn.getresponse()
        return json.loads(resp.read() or b"null")
    finally:
        conn.close()


def wait_replicas(port: int, function: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = system(port, "GET", f"/system/function/{function}")
        if status["replicas"] == count and status["availableReplicas"] == count:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{function} did not reach {count} replicas")


def overhead(calls: int, tmp: Path) -> dict[str, Any]:
    function = "rollout-collector"
    with replica(function) as (_, port, _):
        direct = timed_calls(port, "/", calls)
    with gateway(tmp) as gw_port:
        conn = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=60)
        post(conn, f"/function/{function}")  # the cold start, paid before measuring
        conn.close()
        through = timed_calls(gw_port, f"/function/{function}", calls)
    d, g = summary_ms(direct), summary_ms(through)
    return {
        "function": function,
        "body": SMALL_BODY.decode(),
        "direct_to_replica": d,
        "through_gateway": g,
        "overhead_median_ms": round(g["median_ms"] - d["median_ms"], 3),
        "overhead_p99_ms": round(g["p99_ms"] - d["p99_ms"], 3),
    }


def interpreter_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env_for())
    return time.perf_counter() - t0


def import_seconds(function: str) -> float:
    code = (
        "import time; t = time.perf_counter(); import functions.serve as s; s._handler(); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env_for(function), capture_output=True)
    return float(out.stdout.decode().strip().splitlines()[-1])


def first_answer(function: str) -> tuple[float, float]:
    """(seconds to ready, seconds to the first call answered), from process start."""
    t0 = time.perf_counter()
    with replica(function) as (_, port, ready):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        post(conn, "/")
        answered = time.perf_counter() - t0
        conn.close()
    return ready, answered


def through_gateway(repeats: int, tmp: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {f: [] for f in FUNCTIONS}
    with gateway(tmp) as port:
        for _ in range(repeats):
            for function in FUNCTIONS:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                _, headers = post(conn, f"/function/{function}")
                conn.close()
                if headers.get("X-Cold-Start") == "true":
                    out[function].append(float(headers["X-Cold-Start-Seconds"]))
                system(
                    port,
                    "POST",
                    f"/system/scale-function/{function}",
                    {"serviceName": function, "replicas": 0},
                )
                wait_replicas(port, function, 0)
    return out


def cold_starts(repeats: int, tmp: Path) -> dict[str, Any]:
    interp = [interpreter_seconds() for _ in range(repeats)]
    table: dict[str, Any] = {"interpreter_s": round(statistics.median(interp), 3)}
    gw = through_gateway(repeats, tmp)
    for function in FUNCTIONS:
        imports = [import_seconds(function) for _ in range(repeats)]
        runs = [first_answer(function) for _ in range(repeats)]
        table[function] = {
            "imports_s": round(statistics.median(imports), 3),
            "ready_s": round(statistics.median(r for r, _ in runs), 3),
            "first_answer_s": round(statistics.median(a for _, a in runs), 3),
            "first_call_s": round(statistics.median(a - r for r, a in runs), 4),
            "through_gateway_s": round(statistics.median(gw[function]), 3) if gw[function] else None,
            "repeats": repeats,
        }
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls for the overhead (at least 1000)")
    ap.add_argument("--repeats", type=int, default=5, help="cold starts per function")
    ap.add_argument("--json", type=Path, help="also write the record here")
    args = ap.parse_args()
    import tempfile

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ftg-bench-gateway-") as tmp:
        over = overhead(args.calls, Path(tmp))
        cold = cold_starts(args.repeats, Path(tmp))
    record = {"overhead": over, "cold_start": cold, "machine": machine_info(load_before)}
    d, g = over["direct_to_replica"], over["through_gateway"]
    print(f"per-call, small body, warm replica, {g['n']} calls, one keep-alive connection:")
    print(f"  direct to the replica   median {d['median_ms']:7.3f} ms   p99 {d['p99_ms']:7.3f} ms")
    print(f"  through the gateway     median {g['median_ms']:7.3f} ms   p99 {g['p99_ms']:7.3f} ms")
    om, op = over["overhead_median_ms"], over["overhead_p99_ms"]
    print(f"  gateway overhead        median {om:7.3f} ms   p99 {op:7.3f} ms")
    print(f"\ncold start (median of {args.repeats}; python -c pass takes {cold['interpreter_s']:.3f} s):")
    print(
        f"  {'function':20s} {'imports':>8s} {'ready':>8s} {'1st call':>9s} {'answered':>9s} {'via gw':>8s}"
    )
    for function in FUNCTIONS:
        c = cold[function]
        via = f"{c['through_gateway_s']:.3f}" if c["through_gateway_s"] is not None else "-"
        print(
            f"  {function:20s} {c['imports_s']:8.3f} {c['ready_s']:8.3f} {c['first_call_s']:9.4f}"
            f" {c['first_answer_s']:9.3f} {via:>8s}"
        )
    m = record["machine"]
    print(f"\n{m['cpus']} CPUs, load {m['loadavg_1min_at_start']} -> {m.get('loadavg_1min_at_end')}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
