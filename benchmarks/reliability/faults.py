"""Faults at scale: training runs through a proxy that fails 20% of the function calls.

A real sweep (CartPole PPO, two seeds in parallel) runs on the embedded engine against the local
OpenFaaS-compatible gateway (``python -m workflows.gateway.server``, a subprocess), once directly and once
through :class:`~benchmarks.reliability.faultproxy.FaultProxy` at p = 0.2, half of the faults before the
function ran and half after. Required:

- the faulty sweep finishes every trial in one ``submit``, without a manual resume: the templates'
  retries (and the engines' retried direct calls) absorb the faults;
- every checkpoint version's weights are bit-identical to the fault-free run's: retried steps rewrite the
  same bytes, and a retried update that had already committed answers with the committed result;
- a 4xx answer is not retried (it cannot succeed): the gateway sees each such call once;
- two policy-updaters racing on one iteration: exactly one commits, both answer the same result, and the
  checkpoint is the one a lone updater writes.

``run(scale)``: ``24 * scale`` iterations per trial and ``4 * scale`` races. Every store is fresh and
every id fixed, so with the proxy's seeded, request-keyed decisions the same calls fail every time.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.reliability.checks import Check
from benchmarks.reliability.faultproxy import PASS, FaultProxy
from benchmarks.reliability.procs import THREAD_ENV, free_port, stop_process

AREA = "faults"
P_FAULT = 0.2
BEFORE_SHARE = 0.5
SEED = 20261130
ITERATIONS_PER_SCALE = 24
RACES_PER_SCALE = 4
ROOT = Path(__file__).resolve().parents[2]
# 256 steps per iteration in two collector shards, 4 epochs of 2 minibatches; evaluated every 8 iterations.
PPO: dict[str, Any] = {
    "env_id": "CartPole-v1",
    "n_envs": 8,
    "n_steps": 32,
    "shards": 2,
    "batch_size": 128,
    "n_epochs": 4,
    "eval_every_steps": 8 * 256,
    "eval_episodes": 5,
    "threshold": None,
}
SEEDS = [0, 1]


@contextmanager
def gateway(store_url: str, meta_url: str, log: Path, start_timeout: float = 60.0) -> Iterator[str]:
    """The local gateway as a subprocess on a free port, serving the functions on these stores.

    Yields:
        Its base URL.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **THREAD_ENV, "FTG_STORE_URL": store_url, "FTG_META_URL": meta_url}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workflows.gateway.server", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"gateway did not start:\n{log.read_text(errors='replace')}"
                        ) from None
                    time.sleep(0.05)
            yield url
        finally:
            stop_process(proc)


def _settings(store_url: str, meta_url: str, gateway_url: str) -> Any:
    from ftg_common.settings import Settings

    return Settings(
        engine="local", store_url=store_url, meta_url=meta_url, gateway_url=gateway_url, local_workers=0
    )


def _sweep(iterations: int) -> Any:
    from ftg_common.config import SweepConfig

    return SweepConfig(
        name="faults",
        seeds=SEEDS,
        max_parallel=len(SEEDS),
        defaults={**PPO, "total_steps": iterations * PPO["n_envs"] * PPO["n_steps"]},
        configs={"ppo": {}},
    )


def _train(
    store_url: str, meta_url: str, gateway_url: str, iterations: int, sweep_id: str
) -> tuple[dict[int, Any], str]:
    """One ``submit`` of the sweep through ``gateway_url``: (run record per seed, error or "")."""
    from rich.console import Console

    from workflows.sweep import open_services, submit

    services = open_services(_settings(store_url, meta_url, gateway_url), tracking=False, warm=False)
    console = Console(file=io.StringIO(), width=160)
    sweep = _sweep(iterations)
    error = ""
    try:
        try:
            submit(sweep, services, console, sweep_id=sweep_id)
        except Exception as exc:  # a failed trial raises SweepFailed; the check reports it
            error = f"{type(exc).__name__}: {exc}"
        runs = [services.meta.get_run(rid) for rid in services.meta.get_sweep(sweep_id).get("runs", [])]
    finally:
        services.close()
    return {int(r["extra"]["seed"]): r for r in runs}, error


def _weights(store_url: str, run_id: str, versions: int) -> list[bytes]:
    from ftg_common import layout
    from ftg_common.store import open_store

    store = open_store(store_url, _settings(store_url, "sqlite:///:memory:", "local"))
    return [store.get_bytes(layout.ckpt_weights_key(run_id, v)) for v in range(versions + 1)]


def _training_checks(
    gw: str, store_url: str, meta_url: str, scale: int
) -> tuple[list[Check], dict[int, bytes]]:
    """The sweep without and with faults; also returns the fault-free runs' version 1 weights per seed."""
    iterations = ITERATIONS_PER_SCALE * scale
    t0 = time.perf_counter()
    clean, clean_error = _train(store_url, meta_url, gw, iterations, "faults-clean")
    clean_s = time.perf_counter() - t0
    with FaultProxy(gw, p=P_FAULT, seed=SEED, before_share=BEFORE_SHARE) as proxy:
        t0 = time.perf_counter()
        faulty, faulty_error = _train(store_url, meta_url, proxy.url, iterations, "faults-faulty")
        faulty_s = time.perf_counter() - t0
    counts = dict(proxy.counts)
    calls = sum(counts.values())
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()) if k != PASS)
    completes = Check(
        AREA,
        "training through 20% failing calls completes without a resume",
        notes=(
            f"{len(SEEDS)} trials x {iterations} iterations (CartPole PPO, 2 shards), one submit each, "
            f"in parallel. Proxy: {calls} function calls, {proxy.faults} failed "
            f"({proxy.faults / max(calls, 1):.1%}: {kinds}); upstream errors {proxy.upstream_errors}. "
            f"Wall time {faulty_s:.1f} s with faults, {clean_s:.1f} s without."
        ),
    )
    identical = Check(
        AREA,
        "final weights bit-identical to the fault-free run",
        notes="runs/<run>/ckpt/<last>/weights.safetensors bytes, per seed",
    )
    versions = Check(
        AREA,
        "every checkpoint version bit-identical to the fault-free run",
        notes=f"weights.safetensors of versions 0..{iterations}, per seed",
    )
    if clean_error:
        completes.notes += f" The fault-free run failed: {clean_error}"
    for seed in SEEDS:
        run = faulty.get(seed) or {}
        finished = run.get("status") == "finished" and run.get("last_iteration") == iterations - 1
        completes.record(finished, f"seed {seed}: {run.get('status')} {faulty_error}".strip())
        if not finished or seed not in clean:
            identical.record(False, f"seed {seed}: no finished run to compare")
            continue
        mine = _weights(store_url, run["run_id"], iterations)
        theirs = _weights(store_url, clean[seed]["run_id"], iterations)
        identical.record(mine[-1] == theirs[-1], f"seed {seed}: final weights differ")
        for v, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            versions.record(a == b, f"seed {seed}: version {v} differs")
    reference = {
        seed: _weights(store_url, r["run_id"], 1)[1] for seed, r in clean.items() if r["status"] == "finished"
    }
    return [completes, identical, versions], reference


def _post(url: str, body: dict[str, Any], timeout: float = 300.0) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _race(url: str, body: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """POST ``body`` to ``url`` from two threads released at the same moment; both answers."""
    barrier = threading.Barrier(2)

    def call() -> tuple[int, dict[str, Any]]:
        barrier.wait()
        return _post(url, body)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(call) for _ in range(2)]
        return [f.result() for f in futures]


def _fresh_run(services: Any, run_id: str, seed: int, iterations: int) -> tuple[Any, dict[str, Any]]:
    """A run of the sweep's config with version 0, iteration 0 collected and aggregated.

    Returns:
        (its config, the aggregator's answer).
    """
    from ftg_common.config import PPOConfig, RunConfig
    from workflows.driver import RunDriver

    # The sweep's config exactly: the schedules depend on total_steps, so version 1 does too.
    ppo = _sweep(iterations).trial_configs()["ppo"]
    assert isinstance(ppo, PPOConfig)
    cfg = RunConfig(run_id=run_id, seed=seed, ppo=ppo)
    RunDriver(cfg, engine=services.engine, store=services.store, meta=services.meta).prepare()
    ref = {"run_id": run_id, "iteration": 0, "config_digest": cfg.digest()}
    shards = [services.engine.call("rollout-collector", {**ref, "shard": s}) for s in range(ppo.shards)]
    return cfg, services.engine.call("reward-aggregator", {**ref, "shards": shards})


def _race_check(gw: str, store_url: str, meta_url: str, scale: int, reference: dict[int, bytes]) -> Check:
    """Two policy-updaters racing on iteration 0 of fresh runs of the sweep's config."""
    from ftg_common import layout
    from workflows.sweep import open_services

    check = Check(
        AREA,
        "racing policy-updaters: one commit, equal answers, identical checkpoint",
        notes=(
            "two concurrent policy-updater calls for iteration 0 of a fresh run, released together; "
            "required: both 200, exactly one answer with already_committed false, the answers equal "
            "but for already_committed and seconds, version 1 committed once, and its weights the bytes "
            "the fault-free sweep's run of the same seed wrote"
        ),
    )
    services = open_services(_settings(store_url, meta_url, gw), tracking=False, warm=False)
    both_trained = 0
    try:
        for i in range(RACES_PER_SCALE * scale):
            seed = SEEDS[i % len(SEEDS)]
            run_id = f"race-{i}"
            cfg, batch = _fresh_run(services, run_id, seed, ITERATIONS_PER_SCALE * scale)
            body = {"run_id": run_id, "iteration": 0, "config_digest": cfg.digest(), "batch": batch}
            answers = _race(f"{gw}/function/policy-updater", body)
            record = services.meta.get_run(run_id)
            problems = []
            if [s for s, _ in answers] != [200, 200]:
                problems.append(f"statuses {[s for s, _ in answers]}: {answers}")
            else:
                fresh = [a for _, a in answers if not a.get("already_committed")]
                if len(fresh) != 1:
                    problems.append(f"{len(fresh)} answers report a fresh commit")
                same = [
                    {k: v for k, v in a.items() if k not in ("already_committed", "seconds")}
                    for _, a in answers
                ]
                if same[0] != same[1]:
                    problems.append(f"answers differ: {same}")
                times = sorted(float(a.get("seconds") or 0.0) for _, a in answers)
                both_trained += times[0] > 0.5 * times[1]  # a loser that found the commit answers at once
            if (record["version"], record["last_iteration"]) != (1, 0):
                problems.append(
                    f"run record version {record['version']}, last_iteration {record['last_iteration']}"
                )
            weights = services.store.get_bytes(layout.ckpt_weights_key(run_id, 1))
            if weights != reference.get(seed):
                problems.append("version 1 weights differ from a lone updater's (or there is no reference)")
            check.record(not problems, f"race {i} (seed {seed}): {'; '.join(problems)}")
        check.notes += (
            f". Both updaters trained (call times within 2x) in {both_trained} of {check.tried} races; "
            "in the others one found the iteration committed"
        )
    finally:
        services.close()
    return check


def _final_4xx_check(gw: str, store_url: str, meta_url: str) -> Check:
    """A 4xx (here 409: a config digest that is not the run's) reaches the gateway once per call."""
    from workflows.iteration import COLLECT
    from workflows.sweep import open_services

    check = Check(
        AREA,
        "4xx answers are final: one attempt each",
        notes="iteration 0 of a fresh run with a wrong config digest (409) through a proxy injecting no "
        "faults: each collector shard and a direct updater call reach the gateway exactly once",
    )
    with FaultProxy(gw, p=0.0) as proxy:
        services = open_services(_settings(store_url, meta_url, proxy.url), tracking=False, warm=False)
        try:
            run_id = "final-4xx"
            cfg, _ = _fresh_run(services, run_id, SEEDS[0], ITERATIONS_PER_SCALE)
            seen = dict(proxy.by_function)
            shards = list(range(cfg.ppo.shards))
            wf = services.engine.run(
                {
                    "run-id": run_id,
                    "iteration": "0",
                    "iterations": str(cfg.ppo.n_iterations),
                    "eval-every": str(cfg.ppo.eval_every_iterations),
                    "gateway": proxy.url,
                    "shards": json.dumps(shards),
                    "config-digest": "0" * 16,
                    "traceparent": "",
                }
            )
            for shard in shards:
                node = wf.node(f"{COLLECT}({shard}:{shard})")
                check.record(
                    node.attempts == 1 and node.status_code == 409 and node.phase == "Failed",
                    f"shard {shard}: {node.attempts} attempts, status {node.status_code}: {node.message}",
                )
            calls = proxy.by_function[("rollout-collector", PASS)] - seen.get(("rollout-collector", PASS), 0)
            check.record(
                calls == len(shards), f"the gateway saw {calls} collector calls for {len(shards)} shards"
            )
            before = proxy.by_function[("policy-updater", PASS)]
            try:
                services.engine.call(
                    "policy-updater", {"run_id": run_id, "iteration": 0, "config_digest": "0" * 16}
                )
                raised = False
            except Exception:
                raised = True
            calls = proxy.by_function[("policy-updater", PASS)] - before
            check.record(raised and calls == 1, f"direct call: raised {raised}, {calls} calls")
        finally:
            services.close()
    return check


def run(scale: int = 1) -> list[Check]:
    """Run every faults check; ``scale`` multiplies the iterations per trial and the races."""
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    with tempfile.TemporaryDirectory(prefix="ftg-faults-") as tmp_name:
        tmp = Path(tmp_name)
        store_url, meta_url = f"file://{tmp}/store", f"sqlite:///{tmp}/meta.db"
        with gateway(store_url, meta_url, tmp / "gateway.log") as gw:
            # First, so that the gateway's imports (torch for version 0 included) are paid before the
            # two sweeps are timed.
            final_4xx = _final_4xx_check(gw, store_url, meta_url)
            checks, reference = _training_checks(gw, store_url, meta_url, scale)
            checks.append(_race_check(gw, store_url, meta_url, scale, reference))
            checks.append(final_4xx)
    return checks


def main() -> int:
    """``python -m benchmarks.reliability.faults [scale]``: run and print the checks."""
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    t0 = time.perf_counter()
    checks = run(scale)
    for c in checks:
        print(f"{'ok ' if c.ok else 'FAIL'} {c.passed}/{c.tried}  {c.name}")
        if c.notes:
            print(f"      {c.notes}")
        for f in c.failures:
            print(f"      failure: {f}")
    print(f"{time.perf_counter() - t0:.1f} s")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
