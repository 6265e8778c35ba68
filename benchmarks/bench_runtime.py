"""The serverless runtime under load: burst scale-out, per-call overhead, a sweep through it, cold starts.

    python benchmarks/bench_runtime.py [--caps 1,2,4,8,16,32,64] [--repeats 3] [--quick]
        [--phases burst,timeline,overhead,sweep,coldstart] [--steps 64] [--sweep-runs 3] [--no-mlflow]

(``make bench-runtime``.) Every gateway is ``python -m workflows.gateway.server --port 0`` as a process of
its own, with its own state (object store, metadata store and working directory in a temporary
directory), the in-process async queue (``FTG_ASYNC_QUEUE=memory``) and a known admin password; it is
stopped with its replicas when its phase ends, failed or not.

1. **Burst scale-out.** ``FTG/SlowCartPole-v1`` (:mod:`ftg_common.envs.slow`: CartPole whose steps each
   wait 2 ms, standing for a remote simulator) in 64 shards of 1 env x 64 steps: one iteration's
   collection is 64 concurrent ``rollout-collector`` calls through the gateway, issued as the engine's
   ``withParam`` fan-out issues them (:class:`workflows.engines.invokers.HttpInvoker`, here with one
   thread per shard). For each replica cap N (``FTG_GATEWAY_MAX_REPLICAS``, a gateway started per N):
   the first burst (from zero replicas: cold starts included), then ``--repeats`` warm bursts once
   every replica the cap allows is ready. The speed-up of N is the warm median of N = 1 over the warm
   median of N. Target: at least 0.8 N up to 32. The CPU the gateway, the replicas and the client use
   per burst is measured too (from /proc), since on a small machine it bounds the burst from below.
2. **Timeline.** One gateway with a short zero-duration; ``/system/functions`` polled every 50 ms through
   a burst from zero, a second burst and the scale-down back to zero. With (1) it makes the picture
   (``<date>-runtime.png``), logged to MLflow (experiment ``faastraingym-benchmarks``).
3. **Per-call overhead** of the gateway, warm replica, small body, measured by
   :func:`bench_gateway.overhead` (through the gateway minus straight to a replica). Target: median at
   most 2 ms, p99 at most 10 ms.
4. **A sweep through the gateway**: ``ppo_sweep.py submit --only zoo --seeds 0 --no-tracking`` with
   ``FTG_GATEWAY_URL`` (a warm gateway) and without (the embedded warm pool), interleaved; wall time of
   the command. Target: median ratio at most 1.5.
5. **Cold starts** per function: ``bench_coldstart.py`` (new process -> first answer to a real request,
   with its breakdown) and, through a gateway, the wait a call to a function at zero replicas sees
   (``X-Cold-Start-Seconds``, :func:`bench_gateway.through_gateway`).

The machine is shared: the load average at the start and end is recorded, and every figure is a median.
``--quick`` is a smoke run (caps 1, 4, 16; one warm burst; a short sweep once each; one cold start per
function), written as ``<date>-runtime-quick.*``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
if str(ROOT) not in sys.path:  # run as a script: the checkout's packages, this folder included
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_gateway  # noqa: E402
from benchmarks.machine_info import machine_info  # noqa: E402
from benchmarks.results_io import git_revision  # noqa: E402
from ftg_common.envs.slow import SLOW_CARTPOLE_ID, STEP_SECONDS  # noqa: E402
from workflows.gateway.auth import BasicAuth  # noqa: E402
from workflows.gateway.stack import load as load_stack  # noqa: E402

COLLECTOR = "rollout-collector"
PASSWORD = "bench-runtime"
RUN_ID = "bench-runtime"
DEFAULT_CAPS = (1, 2, 4, 8, 16, 32, 64)
TARGET_FRACTION = 0.8  # speed-up of N replicas at least 0.8 N ...
TARGET_UP_TO = 32  # ... for N up to 32
TARGET_OVERHEAD_MEDIAN_MS = 2.0
TARGET_OVERHEAD_P99_MS = 10.0
TARGET_SWEEP_RATIO = 1.5
POLL_S = 0.05
START_TIMEOUT_S = 60.0
SWEEP_ARGS = ("submit", "--only", "zoo", "--seeds", "0", "--no-tracking")
EXPERIMENT = "faastraingym-benchmarks"
PHASES = ("burst", "timeline", "overhead", "sweep", "coldstart")


# --------------------------------------------------------------------------- gateways


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``FTG_*`` setting, plus ``extra``.

    A developer's own ``FTG_STORE_URL`` or ``FTG_GATEWAY_URL`` must not leak into a measured process.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTG_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"  # as the function images run
    env.update(extra)
    return env


def state_env(state: Path) -> dict[str, str]:
    """The settings that put a process's object store and metadata store under ``state``."""
    return {"FTG_STORE_URL": f"file://{state}/store", "FTG_META_URL": f"sqlite:///{state}/meta.db"}


@dataclass
class Gateway:
    """A running gateway process: its port, its state directory and its log."""

    proc: subprocess.Popen[str]
    port: int
    state: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def system(self, method: str, path: str, body: Any = None) -> Any:
        """A ``/system/*`` call as admin; the JSON answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = b"" if body is None else json.dumps(body).encode()
            headers = {"Authorization": BasicAuth(PASSWORD).header(), "Content-Type": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"{method} {path} answered {resp.status}: {raw[:300]!r}")
            return json.loads(raw or b"null")
        finally:
            conn.close()

    def replicas(self, function: str = COLLECTOR) -> tuple[int, int]:
        """(replicas, availableReplicas) of ``function``."""
        s = self.system("GET", f"/system/function/{function}")
        return int(s["replicas"]), int(s["availableReplicas"])

    def wait_replicas(self, function: str, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.replicas(function) == (count, count):
                return
            time.sleep(POLL_S)
        raise RuntimeError(f"{function} did not reach {count} ready replicas in {timeout:g} s")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the gateway's replicas), from /proc; empty where /proc is not Linux's."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purpose: check its state where /proc tells it.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return True


def stop_gateway(gw: Gateway) -> None:
    """SIGTERM the gateway (it stops its replicas); SIGKILL it and any replica left after a grace."""
    replicas = _children(gw.proc.pid)
    if gw.proc.poll() is None:
        gw.proc.terminate()
        try:
            gw.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gw.proc.kill()
            gw.proc.wait()
    # Replicas also exit when the gateway's end of their stdin closes; these are only stragglers.
    deadline = time.monotonic() + 10
    for pid in replicas:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def gateway(state: Path, **settings: str) -> Iterator[Gateway]:
    """A gateway process with its state under ``state`` and ``settings`` (``FTG_*``); stopped on exit."""
    state.mkdir(parents=True, exist_ok=True)
    env = clean_env(**state_env(state), FTG_ASYNC_QUEUE="memory", FTG_GATEWAY_PASSWORD=PASSWORD, **settings)
    log = state / "gateway.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workflows.gateway.server", "--port", "0"],
            cwd=state,  # a generated password file or anything else relative lands in the state dir
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    gw = Gateway(proc, 0, state, log)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
        line = proc.stdout.readline() if ready else ""
        if "http://" not in line:
            raise RuntimeError(f"the gateway did not start: {line!r}\n{gw.tail()}")
        gw.port = int(line.strip().rsplit(":", 1)[1])
        yield gw
    finally:
        stop_gateway(gw)


# --------------------------------------------------------------------------- the benchmark run


def prepare_run(state: Path, shards: int, steps: int) -> str:
    """Freeze the slow-env run and commit its policy version 0 under ``state``; its config digest.

    Done once, in a process of its own (the functions in-process, as the tests call them); each gateway
    then gets a copy of this state, so no policy-updater replica takes a slot of the cap being measured.
    """
    code = r"""
import json, sys
from ftg_common import layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.faas import call
run_id, env_id, shards, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
batch = min(256, shards * steps)
ppo = PPOConfig(env_id=env_id, n_envs=shards, shards=shards, n_steps=steps, batch_size=batch)
cfg = RunConfig(run_id=run_id, seed=0, ppo=ppo)
runtime.store().put_json(layout.config_key(run_id), cfg.to_stored())
runtime.meta().create_run(run_id)
body = {"run_id": run_id, "iteration": 0, "config_digest": cfg.digest(), "mode": "init"}
r = call("policy-updater", json.dumps(body).encode(), {"Content-Type": "application/json"})
if r.status != 200:
    raise SystemExit(f"policy init answered {r.status}: {r.body[:500]}")
print(cfg.digest())
"""
    out = subprocess.run(
        [sys.executable, "-c", code, RUN_ID, SLOW_CARTPOLE_ID, str(shards), str(steps)],
        cwd=state,
        env=clean_env(**state_env(state), FTG_LOCAL_WORKERS="0"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(f"preparing the run failed:\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def copy_state(template: Path, dest: Path) -> Path:
    """A fresh state directory holding the prepared run (its own store and metadata database)."""
    shutil.copytree(template, dest)
    return dest


@dataclass
class Burst:
    """One iteration's collection: ``shards`` concurrent collector calls.

    ``shard_seconds`` are the function's own times (the ``seconds`` of its answers); ``cpu_seconds`` is the
    CPU the gateway, its replicas and this client used during the burst.
    """

    seconds: float
    cold_marked: int
    shard_seconds: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 4),
            "calls_marked_cold": self.cold_marked,
            "shard_seconds_median": round(statistics.median(self.shard_seconds), 4),
            "shard_seconds_max": round(max(self.shard_seconds), 4),
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu.items()},
        }


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (0 where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(gw: Gateway) -> dict[str, float]:
    """CPU seconds used so far by the gateway, its live replicas and this process (the client)."""
    mine = os.times()
    return {
        "gateway": _proc_cpu(gw.proc.pid),
        "replicas": sum(_proc_cpu(p) for p in _children(gw.proc.pid)),
        "client": mine.user + mine.system,
    }


class Collector:
    """Issues a collection burst through a gateway the way the engine's fan-out does (HttpInvoker)."""

    def __init__(self, gw: Gateway, digest: str, shards: int) -> None:
        from workflows.engines.invokers import HttpInvoker

        # One thread (and connection) per shard: every call of the fan-out is in flight at once. The
        # engine's own default is 16 threads; 64 here measures the gateway, not that client bound.
        self.invoker = HttpInvoker(workers=shards)
        self.gw = gw
        self.url = f"{gw.url}/function/{COLLECTOR}"
        self.bodies = [
            json.dumps({"run_id": RUN_ID, "iteration": 0, "config_digest": digest, "shard": s}).encode()
            for s in range(shards)
        ]

    def burst(self) -> Burst:
        headers = {"Content-Type": "application/json"}
        cpu = cpu_seconds(self.gw)
        started = time.perf_counter()
        futures = [self.invoker.submit(self.url, "POST", headers, b, 300.0) for b in self.bodies]
        answers = [f.result() for f in futures]
        seconds = time.perf_counter() - started
        after = cpu_seconds(self.gw)
        used = {k: after[k] - cpu[k] for k in after}
        bad = [a for a in answers if a.status != 200]
        if bad:
            raise RuntimeError(
                f"{len(bad)} of {len(answers)} calls failed, e.g. {bad[0].status}: {bad[0].body[:300]}"
            )
        cold = sum(1 for a in answers if a.headers.get("X-Cold-Start") == "true")
        shard = [float(json.loads(a.body)["seconds"]) for a in answers]
        return Burst(seconds, cold, shard, used)

    def close(self) -> None:
        self.invoker.close()


class Poller:
    """Samples ``/system/functions`` every :data:`POLL_S` seconds in a thread: (t, replicas, available)."""

    def __init__(self, gw: Gateway, function: str = COLLECTOR) -> None:
        self.gw = gw
        self.function = function
        self.samples: list[tuple[float, int, int]] = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def _run(self) -> None:
        auth = {"Authorization": BasicAuth(PASSWORD).header()}
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        try:
            while not self._stop.is_set():
                tick = time.perf_counter()
                try:
                    conn.request("GET", "/system/functions", headers=auth)
                    items = json.loads(conn.getresponse().read())
                    fn = next(f for f in items if f["name"] == self.function)
                    self.samples.append((self.now(), int(fn["replicas"]), int(fn["availableReplicas"])))
                except (OSError, http.client.HTTPException, ValueError, StopIteration):
                    conn.close()  # reconnect on the next tick
                self._stop.wait(max(POLL_S - (time.perf_counter() - tick), 0.0))
        finally:
            conn.close()


def bench_cap(
    template: Path, work: Path, digest: str, shards: int, cap: int, repeats: int, stack_max: int
) -> dict[str, Any]:
    """The cold burst and ``repeats`` warm bursts with at most ``cap`` replicas on the machine."""
    state = copy_state(template, work / f"cap-{cap}")
    with gateway(state, FTG_GATEWAY_MAX_REPLICAS=str(cap)) as gw:
        collector = Collector(gw, digest, shards)
        try:
            cold = collector.burst()
            started_in_cold = int(metric_total(gw, "gateway_replica_start_seconds_count"))
            # Warm means every replica the burst may use is ready: the cold burst can end before the
            # last of them started (starts are bounded to a few at once, and the scaler drops starts
            # the shrinking demand no longer needs), so they are asked for by hand and awaited.
            wanted = min(cap, stack_max, shards)
            gw.system(
                "POST", f"/system/scale-function/{COLLECTOR}", {"serviceName": COLLECTOR, "replicas": wanted}
            )
            gw.wait_replicas(COLLECTOR, wanted)
            warm = [collector.burst() for _ in range(repeats)]
            replicas = gw.replicas()
        except Exception as exc:
            raise RuntimeError(f"cap {cap}: {exc}\n{gw.tail()}") from exc
        finally:
            collector.close()
    cpus = os.cpu_count() or 1
    cpu = statistics.median(b.cpu_seconds for b in warm)
    row: dict[str, Any] = {
        "cap": cap,
        "replicas": replicas[1],
        "cold": {**cold.as_dict(), "replicas_started": started_in_cold},
        "warm": [b.as_dict() for b in warm],
        "warm_median_s": round(statistics.median(b.seconds for b in warm), 4),
        "warm_shard_median_s": round(statistics.median(s for b in warm for s in b.shard_seconds), 4),
        "warm_cpu_s": round(cpu, 3),
        "warm_cpu_split_s": {
            k: round(statistics.median(b.cpu[k] for b in warm), 3) for k in ("gateway", "replicas", "client")
        },
        # However many replicas wait, the CPU work of a burst cannot take less than this on this machine.
        "cpu_floor_s": round(cpu / cpus, 3),
    }
    print(
        f"cap {cap:3d}: {replicas[1]:3d} replicas, first burst {cold.seconds:6.2f} s "
        f"({started_in_cold} replicas started), warm median {row['warm_median_s']:6.3f} s "
        f"(shard median {row['warm_shard_median_s'] * 1e3:.0f} ms, CPU {cpu:.2f} s)",
        flush=True,
    )
    return row


def speedups(rows: list[dict[str, Any]]) -> None:
    """Add speed-ups (against the warm and cold bursts of cap 1) and the target verdict to each row."""
    base = next(r for r in rows if r["cap"] == 1)
    for r in rows:
        n = r["cap"]
        r["speedup_warm"] = round(base["warm_median_s"] / r["warm_median_s"], 2)
        r["speedup_cold"] = round(base["cold"]["seconds"] / r["cold"]["seconds"], 2)
        r["target"] = round(TARGET_FRACTION * n, 1) if n <= TARGET_UP_TO else None
        r["target_met"] = None if r["target"] is None else r["speedup_warm"] >= r["target"]


def bench_timeline(template: Path, work: Path, digest: str, shards: int, cap: int) -> dict[str, Any]:
    """Replicas over time: a burst from zero, a second one, then idle until the function is at zero again.

    The second burst finds what the first one left: replicas still starting when a burst ends are
    dropped by the scaler, so it starts the rest again.
    """
    state = copy_state(template, work / "timeline")
    settings = {
        "FTG_GATEWAY_MAX_REPLICAS": str(cap),
        "FTG_GATEWAY_ZERO_DURATION_SECONDS": "3",
        "FTG_GATEWAY_SCALE_DOWN_SECONDS": "1",
    }
    events: list[tuple[str, float, float]] = []
    with gateway(state, **settings) as gw, Poller(gw) as poll:
        collector = Collector(gw, digest, shards)
        try:
            time.sleep(0.5)  # a flat start on the picture
            for label in ("first burst (from zero)", "second burst"):
                t = poll.now()
                collector.burst()
                events.append((label, t, poll.now()))
                time.sleep(0.5)
            deadline = time.monotonic() + 60
            while gw.replicas() != (0, 0) and time.monotonic() < deadline:
                time.sleep(POLL_S)
            zero_at = poll.now()
            time.sleep(0.5)
        except Exception as exc:
            raise RuntimeError(f"timeline: {exc}\n{gw.tail()}") from exc
        finally:
            collector.close()
    print(f"timeline: back to zero replicas {zero_at - events[-1][2]:.1f} s after the last burst", flush=True)
    return {
        "cap": cap,
        "settings": settings,
        "events": [{"label": lb, "start_s": round(a, 3), "end_s": round(b, 3)} for lb, a, b in events],
        "zero_at_s": round(zero_at, 3),
        "samples": [[round(t, 3), r, a] for t, r, a in poll.samples],
    }


# --------------------------------------------------------------------------- overhead, cold starts


def bench_overhead(work: Path, calls: int) -> dict[str, Any]:
    """:func:`bench_gateway.overhead`, its gateway started with this benchmark's settings."""
    state = work / "overhead"
    state.mkdir()
    with gateway_settings_for_bench_gateway():
        over: dict[str, Any] = bench_gateway.overhead(calls, state)
    g = over["through_gateway"]
    print(
        f"overhead: median {over['overhead_median_ms']:.3f} ms, p99 {over['overhead_p99_ms']:.3f} ms "
        f"(through the gateway {g['median_ms']:.3f} / {g['p99_ms']:.3f} ms)",
        flush=True,
    )
    return over


@contextlib.contextmanager
def gateway_settings_for_bench_gateway() -> Iterator[None]:
    """bench_gateway's gateways inherit this process's environment: give them this run's settings."""
    saved = dict(os.environ)
    for k in [k for k in os.environ if k.startswith("FTG_")]:
        del os.environ[k]
    os.environ.update(FTG_ASYNC_QUEUE="memory")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bench_gateway_cold(work: Path, repeats: int) -> dict[str, Any]:
    """Through a gateway: the wait of a call to each function at zero replicas (median of ``repeats``)."""
    state = work / "gateway-cold"
    state.mkdir()
    with gateway_settings_for_bench_gateway():
        seen: dict[str, list[float]] = bench_gateway.through_gateway(repeats, state)
    return {f: (round(statistics.median(v), 3) if v else None) for f, v in seen.items()}


def bench_coldstart(work: Path, runs: int) -> dict[str, Any]:
    """``bench_coldstart.py`` (its own process and stores); its per-function summaries."""
    out = work / "coldstart"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_coldstart.py"), "--runs", str(runs), "--out", str(out)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench_coldstart.py failed:\n{proc.stderr[-2000:]}")
    record = json.loads(next(out.glob("*-coldstart*.json")).read_text())
    results = next(iter(record["results"].values()))
    keys = ("interpreter_s", "imports_s", "server_s", "ready_s", "first_call_client_s", "total_s")
    table = {f: {k: results[f]["summary"][k] for k in keys} for f in record["functions"]}
    for f, row in table.items():
        print(f"cold start {f:18s} total {row['total_s'] * 1e3:5.0f} ms", flush=True)
    return {"runs": runs, "request": record["request"], "functions": table}


# --------------------------------------------------------------------------- the sweep


def metric_total(gw: Gateway, name: str) -> float:
    """The sum over labels of a series on the gateway's Prometheus page (e.g. a histogram's count)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def run_sweep(state: Path, gateway_url: str | None, total_steps: int | None) -> dict[str, Any]:
    """One ``submit`` as a user runs it; wall time from process start to exit."""
    extra = {"FTG_GATEWAY_URL": gateway_url} if gateway_url else {}
    cmd = [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py"), *SWEEP_ARGS]
    if total_steps:
        cmd += ["--total-steps", str(total_steps)]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=state,
        env=clean_env(**state_env(state), **extra),
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"submit ({'gateway' if gateway_url else 'embedded'}) failed:\n{proc.stderr[-2000:]}"
        )
    # The A/B table's row of the one config: its "≥475" cell says whether the seed reached the threshold.
    row = next((ln for ln in proc.stdout.splitlines() if ln.startswith("│ zoo")), "")
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    return {"seconds": round(seconds, 2), "reached": cells[5] if len(cells) > 5 else "?"}


def bench_sweep(work: Path, runs: int, total_steps: int | None) -> dict[str, Any]:
    """Embedded warm pool vs the gateway, interleaved (embedded first), ``runs`` each."""
    state = work / "sweep"
    state.mkdir()
    out: dict[str, list[dict[str, Any]]] = {"embedded": [], "gateway": []}
    with gateway(state) as gw:
        # A long-running gateway is warm: one replica of each function is started before the first run
        # (scaled by hand, as `faas-cli scale` would), so no run pays the first cold starts.
        for function in bench_gateway.FUNCTIONS:
            gw.system("POST", f"/system/scale-function/{function}", {"serviceName": function, "replicas": 1})
        for function in bench_gateway.FUNCTIONS:
            gw.wait_replicas(function, 1)
        try:
            for i in range(runs):
                for path in ("embedded", "gateway"):
                    before = metric_total(gw, "gateway_cold_start_seconds_count")
                    r = run_sweep(state, gw.url if path == "gateway" else None, total_steps)
                    if path == "gateway":
                        r["cold_starts"] = int(metric_total(gw, "gateway_cold_start_seconds_count") - before)
                    out[path].append(r)
                    print(
                        f"sweep run {i} {path:8s}: {r['seconds']:6.1f} s (reached 475: {r['reached']})",
                        flush=True,
                    )
        except Exception as exc:
            raise RuntimeError(f"sweep: {exc}\n{gw.tail()}") from exc
    emb = statistics.median(r["seconds"] for r in out["embedded"])
    via = statistics.median(r["seconds"] for r in out["gateway"])
    return {
        "command": "python workflows/ppo_sweep.py "
        + " ".join(SWEEP_ARGS)
        + (f" --total-steps {total_steps}" if total_steps else ""),
        "runs": out,
        "embedded_median_s": round(emb, 2),
        "gateway_median_s": round(via, 2),
        "ratio": round(via / emb, 3),
        "target_met": via / emb <= TARGET_SWEEP_RATIO,
    }


# --------------------------------------------------------------------------- picture, MLflow, report


def picture(record: dict[str, Any], path: Path) -> Path | None:
    """(a) replicas over time through a burst and back to zero, (b) speed-up vs N; None without data."""
    import matplotlib

    matplotlib.use("Agg")  # files only: the benchmark runs on machines without a display
    import matplotlib.pyplot as plt

    timeline, burst = record.get("timeline"), record.get("burst")
    if not timeline and not burst:
        return None
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(13, 4.8))
    if timeline:
        t = [s[0] for s in timeline["samples"]]
        ax_a.step(t, [s[1] for s in timeline["samples"]], where="post", label="replicas (starting + ready)")
        ax_a.step(t, [s[2] for s in timeline["samples"]], where="post", label="available (ready)")
        for i, ev in enumerate(timeline["events"]):
            ax_a.axvspan(ev["start_s"], ev["end_s"], color=f"C{i + 2}", alpha=0.15, label=ev["label"])
        ax_a.axvline(timeline["zero_at_s"], color="grey", ls=":", label="back to zero")
        s = timeline["settings"]
        ax_a.set_title(
            f"(a) {COLLECTOR}: {record['shards']}-shard bursts, cap {timeline['cap']}, scale-down "
            f"{s['FTG_GATEWAY_SCALE_DOWN_SECONDS']} s, zero after {s['FTG_GATEWAY_ZERO_DURATION_SECONDS']} s",
            fontsize=9,
        )
        ax_a.set_xlabel("seconds")
        ax_a.set_ylabel("replicas")
        ax_a.legend(fontsize=8)
    if burst:
        rows = burst["rows"]
        caps = [r["cap"] for r in rows]
        ax_b.plot(caps, caps, "k--", lw=1, label="ideal (N)")
        ax_b.plot(
            caps, [TARGET_FRACTION * n for n in caps], "k:", lw=1, label=f"target ({TARGET_FRACTION} N)"
        )
        ax_b.plot(caps, [r["speedup_warm"] for r in rows], "o-", label="measured, warm bursts (median)")
        ax_b.plot(
            caps, [r["speedup_cold"] for r in rows], "s-", alpha=0.6, label="measured, first (cold) burst"
        )
        ax_b.set_xscale("log", base=2)
        ax_b.set_yscale("log", base=2)
        ax_b.set_xticks(caps, [str(c) for c in caps])
        ax_b.set_xlabel("replica cap N (FTG_GATEWAY_MAX_REPLICAS)")
        ax_b.set_ylabel("collection speed-up vs N = 1")
        ax_b.set_title(
            f"(b) {record['shards']} shards x {record['steps']} steps of {SLOW_CARTPOLE_ID} "
            f"({record['step_ms']:g} ms/step), {record['machine']['cpus']} CPUs",
            fontsize=9,
        )
        ax_b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_mlflow(record: dict[str, Any], files: list[Path], write: Callable[[], None]) -> str:
    """Log the record's figures and files to the ``faastraingym-benchmarks`` experiment; the run id.

    ``write`` (re)writes the result files once the run id is in the record, before they are logged.
    """
    import mlflow

    from ftg_common.settings import Settings

    configured = Settings().tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(configured or f"sqlite:///{ROOT / 'mlflow.db'}")
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        # With the default store, artifacts go beside it, where `make ui` serves them from.
        location = None if configured else (ROOT / "mlruns").as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"runtime-{record['date'][:10]}") as run:
        record["mlflow_run"] = run.info.run_id
        mlflow.set_tags({"benchmark": "runtime", "quick": str(record["quick"])})
        mlflow.log_params({"shards": record["shards"], "steps": record["steps"], "env_id": SLOW_CARTPOLE_ID})
        metrics: dict[str, float] = {"elapsed_s": record["elapsed_s"]}
        for r in (record.get("burst") or {}).get("rows", []):
            metrics[f"speedup_warm_n{r['cap']}"] = r["speedup_warm"]
            metrics[f"burst_warm_s_n{r['cap']}"] = r["warm_median_s"]
            metrics[f"burst_cold_s_n{r['cap']}"] = r["cold"]["seconds"]
        if record.get("overhead"):
            metrics["overhead_median_ms"] = record["overhead"]["overhead_median_ms"]
            metrics["overhead_p99_ms"] = record["overhead"]["overhead_p99_ms"]
        if record.get("sweep"):
            metrics["sweep_ratio"] = record["sweep"]["ratio"]
        mlflow.log_metrics(metrics)
        write()
        for f in files:
            mlflow.log_artifact(str(f))
        return str(run.info.run_id)


def _yes(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def to_markdown(record: dict[str, Any]) -> str:
    m = record["machine"]
    la0, la1 = record["loadavg_start"], record["loadavg_end"]
    lines = [
        f"# Serverless runtime: burst scale-out, overhead, sweep, cold starts ({record['date']})",
        "",
        f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; shared with other work: load "
        f"average (1, 5, 15 min) {la0} at the start, {la1} at the end. Revision: {record['revision']}. "
        f"Command: `{record['command']}` ({record['elapsed_s']:.0f} s). Every gateway ran as its own process "
        "with its own state directory and the in-process async queue. Medians throughout.",
        "",
    ]
    burst = record.get("burst")
    if burst:
        lines += [
            "## 1. Burst scale-out",
            "",
            f"{record['shards']} concurrent `{COLLECTOR}` calls per iteration (one per shard: 1 env x "
            f"{record['steps']} steps of `{SLOW_CARTPOLE_ID}`, {record['step_ms']:g} ms wait per step), "
            f"issued through the gateway with the engine's HTTP invoker; a gateway per cap N "
            f"(`FTG_GATEWAY_MAX_REPLICAS`). First burst from zero replicas (cold starts included), then "
            f"{record['repeats']} warm bursts. Speed-up = burst time at N = 1 / at N. Target: warm speed-up "
            f">= {TARGET_FRACTION} N for N <= {TARGET_UP_TO}.",
            "",
            "| N | replicas | first burst s (replicas started) | warm burst s | speed-up warm | target "
            "| met | speed-up first burst | shard s (function) | CPU s per warm burst (floor on "
            f"{record['machine']['cpus']} CPUs) | of which gateway / replicas / client |",
            "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in burst["rows"]:
            target = "-" if r["target"] is None else f"{r['target']:g}"
            cold = r["cold"]
            lines.append(
                f"| {r['cap']} | {r['replicas']} | {cold['seconds']:.2f} ({cold['replicas_started']}) "
                f"| {r['warm_median_s']:.3f} | {r['speedup_warm']:.2f} | {target} | {_yes(r['target_met'])} "
                f"| {r['speedup_cold']:.2f} | {r['warm_shard_median_s']:.3f} "
                f"| {r['warm_cpu_s']:.2f} ({r['cpu_floor_s']:.2f}) "
                f"| {' / '.join(f'{v:.2f}' for v in r['warm_cpu_split_s'].values())} |"
            )
        lines += ["", burst.get("notes", ""), ""]
    tl = record.get("timeline")
    if tl:
        peak = max((s[1] for s in tl["samples"]), default=0)
        last_end = tl["events"][-1]["end_s"]
        lines += [
            "## 2. Replicas through a burst and back to zero",
            "",
            f"Cap {tl['cap']}, "
            + ", ".join(f"`{k}={v}`" for k, v in tl["settings"].items() if k != "FTG_GATEWAY_MAX_REPLICAS")
            + "; "
            f"`/system/functions` polled every {POLL_S * 1e3:.0f} ms ({len(tl['samples'])} samples). Peak "
            f"{peak} replicas; "
            + "; ".join(f"{e['label']} {e['end_s'] - e['start_s']:.2f} s" for e in tl["events"])
            + f"; zero replicas {tl['zero_at_s'] - last_end:.1f} s after the last burst ended.",
            "",
        ]
    if record.get("picture"):
        lines += [f"![replicas over time; speed-up vs N]({Path(record['picture']).name})", ""]
    over = record.get("overhead")
    if over:
        d, g = over["direct_to_replica"], over["through_gateway"]
        # A difference of two p99s is noisy (a stall on the direct side can make it negative), so the
        # p99 target is held against the whole call through the gateway, which bounds the overhead's.
        ok = over["overhead_median_ms"] <= TARGET_OVERHEAD_MEDIAN_MS and g["p99_ms"] <= TARGET_OVERHEAD_P99_MS
        lines += [
            "## 3. Per-call overhead of the gateway",
            "",
            f"`bench_gateway.overhead`: {g['n']} sequential calls, body `{over['body']}` (refused with 400 "
            f"after validation: no work), one keep-alive connection, warm `{over['function']}` replica. "
            f"Target: overhead median <= {TARGET_OVERHEAD_MEDIAN_MS:g} ms, p99 <= "
            f"{TARGET_OVERHEAD_P99_MS:g} ms.",
            "",
            "| ms | median | p99 | mean |",
            "|---|---:|---:|---:|",
            f"| straight to a replica | {d['median_ms']:.3f} | {d['p99_ms']:.3f} | {d['mean_ms']:.3f} |",
            f"| through the gateway | {g['median_ms']:.3f} | {g['p99_ms']:.3f} | {g['mean_ms']:.3f} |",
            f"| **gateway overhead** | **{over['overhead_median_ms']:.3f}** "
            f"| **{over['overhead_p99_ms']:.3f}** | {g['mean_ms'] - d['mean_ms']:.3f} |",
            "",
            f"Target met: {_yes(ok)} (median: the overhead; p99: the whole call through the gateway, "
            "which bounds the overhead's p99; the difference of the two p99s is noise-dominated).",
            "",
        ]
    sw = record.get("sweep")
    if sw:
        lines += [
            "## 4. Default sweep through the gateway",
            "",
            f"`{sw['command']}`, wall time of the command; embedded warm pool (no `FTG_GATEWAY_URL`) and "
            "through a warm gateway (`FTG_GATEWAY_URL`, one replica of each function started before the "
            f"first run), interleaved. Target: ratio <= {TARGET_SWEEP_RATIO:g}.",
            "",
            "| run | embedded s | gateway s (cold starts) | reached 475 (embedded / gateway) |",
            "|---:|---:|---:|---|",
        ]
        for i, (e, g2) in enumerate(zip(sw["runs"]["embedded"], sw["runs"]["gateway"], strict=True)):
            lines.append(
                f"| {i} | {e['seconds']:.1f} | {g2['seconds']:.1f} ({g2.get('cold_starts', '-')}) "
                f"| {e['reached']} / {g2['reached']} |"
            )
        lines += [
            f"| **median** | **{sw['embedded_median_s']:.1f}** | **{sw['gateway_median_s']:.1f}** | |",
            "",
            f"Ratio gateway / embedded: **{sw['ratio']:.2f}**; target met: {_yes(sw['target_met'])}.",
            "",
        ]
    cs = record.get("coldstart")
    if cs:
        via = record.get("gateway_cold") or {}
        lines += [
            "## 5. Cold start per function",
            "",
            f"`bench_coldstart.py --runs {cs['runs']}`: new `python -m functions.serve` process -> first "
            f"answer to a real request ({cs['request']}); and through a gateway, the wait of a call to the "
            "function at zero replicas (`X-Cold-Start-Seconds`, body `{}`, `bench_gateway.through_gateway`). "
            "Target for rollout-collector: total <= 300 ms.",
            "",
            "| ms | interpreter | imports | server | ready | first call | **total** | via gateway |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for f, r in cs["functions"].items():
            g3 = via.get(f)
            cells = [f"{r[k] * 1e3:.0f}" for k in ("interpreter_s", "imports_s", "server_s", "ready_s")]
            cells += [f"{r['first_call_client_s'] * 1e3:.0f}", f"**{r['total_s'] * 1e3:.0f}**"]
            cells.append("-" if g3 is None else f"{g3 * 1e3:.0f}")
            lines.append(f"| {f} | " + " | ".join(cells) + " |")
        lines.append("")
    if record.get("failures"):
        lines += ["## Failures", ""] + [f"- {f}" for f in record["failures"]] + [""]
    if record.get("mlflow_run"):
        lines += [f"MLflow: experiment `{EXPERIMENT}`, run `{record['mlflow_run']}`.", ""]
    return "\n".join(lines)


def burst_notes(rows: list[dict[str, Any]], stack_max: int, cpus: int, steps: int, shards: int) -> str:
    """What the table says, in words: where the speed-up stops following N, and why."""
    notes = []
    misses = [r["cap"] for r in rows if r["target_met"] is False]
    if misses:
        notes.append(f"The target is missed for N = {', '.join(map(str, misses))}.")
    capped = [r["cap"] for r in rows if r["cap"] > stack_max]
    if capped:
        notes.append(
            f"N = {', '.join(map(str, capped))} is above `com.openfaas.scale.max` ({stack_max}) of "
            f"`{COLLECTOR}` in functions/stack.yml, which bounds its replicas to {stack_max}."
        )
    base = next(r for r in rows if r["cap"] == 1)
    waits = steps * STEP_SECONDS
    notes.append(
        f"A shard waits {waits * 1e3:.0f} ms and its function takes "
        f"{base['warm_shard_median_s'] * 1e3:.0f} ms alone (N = 1); the rest is computing (policy, env, "
        "store reads and writes, HTTP)."
    )
    bound = [r["cap"] for r in rows if r["cap"] > 1 and r["warm_median_s"] <= 1.5 * r["cpu_floor_s"]]
    if bound:
        notes.append(
            f"From N = {bound[0]} the warm burst takes less than 1.5x its CPU floor (the CPU seconds the "
            f"gateway, the replicas and the client used, over {cpus} CPUs, which other work on the machine "
            "also uses): the burst is CPU-bound there, not latency-bound, and more replicas cannot help; "
            "the function's own time per shard grows with N for the same reason."
        )
    top = max((r for r in rows if r["cap"] <= TARGET_UP_TO), key=lambda r: r["cap"])
    notes.append(
        f"CPU per call at N = {top['cap']} (warm bursts): "
        + ", ".join(f"{k} {v / shards * 1e3:.1f} ms" for k, v in top["warm_cpu_split_s"].items())
        + "."
    )
    notes.append(
        "The gateway marks every call that waited for a replica started after the call arrived as a cold "
        f"start (`X-Cold-Start`), so in a first burst nearly all {shards} calls are marked while only the "
        "replicas in the table were started (the JSON has both)."
    )
    return " ".join(notes)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument(
        "--caps", default=",".join(map(str, DEFAULT_CAPS)), help="replica caps N (1 is always added)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="warm bursts per cap")
    ap.add_argument("--shards", type=int, default=64, help="collector calls per burst")
    ap.add_argument("--steps", type=int, default=64, help="env steps per shard (1 env each)")
    ap.add_argument("--calls", type=int, default=2000, help="calls for the per-call overhead")
    ap.add_argument("--sweep-runs", type=int, default=3, help="sweeps of each kind")
    ap.add_argument(
        "--sweep-steps", type=int, default=None, help="--total-steps of each sweep (default: its own)"
    )
    ap.add_argument("--coldstart-runs", type=int, default=3, help="timed cold starts per function")
    ap.add_argument("--phases", default=",".join(PHASES), help="what to run, of " + ",".join(PHASES))
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer caps, repeats, calls and runs")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the picture and results to MLflow")
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--suffix", default="", help="appended to the result files' name")
    args = ap.parse_args()
    if args.quick:
        args.caps, args.repeats, args.calls = "1,4,16", 1, 300
        args.sweep_runs, args.sweep_steps, args.coldstart_runs = 1, args.sweep_steps or 8192, 1
    args.cap_list = sorted({1, *(int(c) for c in args.caps.split(",") if c)})
    args.phase_set = {p.strip() for p in args.phases.split(",") if p.strip()}
    unknown = args.phase_set - set(PHASES)
    if unknown:
        ap.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


def run_phases(args: argparse.Namespace, record: dict[str, Any], work: Path) -> None:
    """Run the chosen phases into ``record``; a failed phase (or cap) is recorded, the rest still run."""
    phases, caps = args.phase_set, args.cap_list
    stack_max = load_stack()[COLLECTOR].rule.max
    template = work / "template"
    template.mkdir()
    digest = prepare_run(template, args.shards, args.steps) if phases & {"burst", "timeline"} else ""
    if "burst" in phases:
        rows = []
        for cap in caps:
            try:
                rows.append(bench_cap(template, work, digest, args.shards, cap, args.repeats, stack_max))
            except Exception as exc:  # a failed cap is recorded; the others still say something
                record["failures"].append(str(exc).splitlines()[0])
                print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        if any(r["cap"] == 1 for r in rows):
            speedups(rows)
            notes = burst_notes(rows, stack_max, os.cpu_count() or 1, args.steps, args.shards)
            record["burst"] = {"rows": rows, "notes": notes}
    tl_cap = min(max(c for c in caps if c <= TARGET_UP_TO), stack_max)
    steps: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("timeline", "timeline", lambda: bench_timeline(template, work, digest, args.shards, tl_cap)),
        ("overhead", "overhead", lambda: bench_overhead(work, args.calls)),
        ("sweep", "sweep", lambda: bench_sweep(work, args.sweep_runs, args.sweep_steps)),
        ("coldstart", "coldstart", lambda: bench_coldstart(work, args.coldstart_runs)),
        ("coldstart", "gateway_cold", lambda: bench_gateway_cold(work, args.coldstart_runs)),
    ]
    for phase, key, step in steps:
        if phase not in phases:
            continue
        try:
            record[key] = step()
        except Exception as exc:
            record["failures"].append(f"{key}: {str(exc).splitlines()[0]}")
            print(f"FAILED {key}: {exc}", file=sys.stderr, flush=True)


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()
    stem = time.strftime("%Y-%m-%d", time.gmtime()) + "-runtime"
    stem += "".join(f"-{part}" for part in ("quick" if args.quick else "", args.suffix) if part)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python benchmarks/bench_runtime.py", *sys.argv[1:]]),
        "revision": git_revision(ROOT),
        "quick": args.quick,
        "shards": args.shards,
        "steps": args.steps,
        "step_ms": STEP_SECONDS * 1e3,
        "repeats": args.repeats,
        "loadavg_start": [round(x, 2) for x in load_before],
        "failures": [],
    }
    print(f"load average at the start: {record['loadavg_start']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="ftg-bench-runtime-"))
    try:
        run_phases(args, record, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    record["machine"] = machine_info(load_before)
    record["elapsed_s"] = round(time.perf_counter() - started, 1)
    png = picture(record, out / f"{stem}.png")
    if png is not None:
        record["picture"] = shown_path(png)
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    files = [p for p in (png, md, js) if p is not None]
    if not args.no_mlflow:
        try:
            record["mlflow_run"] = log_mlflow(record, files, write=lambda: write(record, md, js))
        except Exception as exc:  # the recorded files stand without MLflow
            print(f"MLflow logging failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    write(record, md, js)
    print()
    print(to_markdown(record))
    print(f"results: {shown_path(md)}")
    if png is not None:
        print(f"picture: {record['picture']}")
    return 1 if record["failures"] else 0


def shown_path(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it (as the README links it)."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def write(record: dict[str, Any], md: Path, js: Path) -> None:
    md.write_text(to_markdown(record))
    js.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
