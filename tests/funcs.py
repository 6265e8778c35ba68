"""Helpers to set up a run and call the four functions in-process through the python3-http contract."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ftg_common import layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.faas import Response, call

# A short CartPole PPO run: iterations of 128 steps in two collector shards, two epochs of two
# minibatches, 16 iterations, evaluated (2 episodes) every 4. Tests override what they exercise.
SMALL_PPO: dict[str, Any] = dict(
    n_envs=4,
    n_steps=32,
    shards=2,
    batch_size=64,
    n_epochs=2,
    total_steps=128 * 16,
    eval_every_steps=512,
    eval_episodes=2,
)


# Pendulum-v1 with SB3's VecNormalize defaults: a box-action run with observation and reward statistics.
NORMALISED_PENDULUM: dict[str, Any] = dict(
    env_id="Pendulum-v1",
    n_envs=4,
    n_steps=16,
    shards=2,
    batch_size=32,
    total_steps=256,
    normalize=True,
    threshold=None,
)


def small_sweep(
    name: str,
    configs: dict[str, dict[str, Any]],
    *,
    seeds: list[int],
    max_parallel: int = 2,
    total_steps: int = 512,
    eval_every_steps: int = 256,
) -> str:
    """A sweep file's YAML text: short trials sized as ``SMALL_PPO``, ``configs`` by name."""
    import yaml

    defaults = {**SMALL_PPO, "total_steps": total_steps, "eval_every_steps": eval_every_steps}
    spec = {"name": name, "seeds": seeds, "max_parallel": max_parallel, "defaults": defaults}
    text: str = yaml.safe_dump({**spec, "configs": configs}, sort_keys=False)
    return text


def post(function: str, body: Any) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call(function, raw, {"Content-Type": "application/json"})


def request_ref(cfg: RunConfig, iteration: int) -> dict[str, Any]:
    """The fields every request of iteration ``iteration`` of the run carries."""
    return {"run_id": cfg.run_id, "iteration": iteration, "config_digest": cfg.digest()}


def collect_and_aggregate(cfg: RunConfig, ref: dict[str, Any]) -> tuple[list[Any], Any]:
    """Every shard's collection for ``ref``, then their aggregation: (shard results, aggregate result)."""
    shards = []
    for s in range(cfg.hparams.shards):
        r = post("rollout-collector", {**ref, "shard": s})
        assert r.status == 200, r.body
        shards.append(r.json())
    agg = post("reward-aggregator", {**ref, "shards": shards})
    assert agg.status == 200, agg.body
    return shards, agg.json()


def freeze_config(run_id: str = "test-run", seed: int = 0, **ppo: Any) -> RunConfig:
    """Only store the run's frozen config: enough for a function to accept requests of the run."""
    cfg = RunConfig(run_id=run_id, seed=seed, ppo=PPOConfig(**ppo))
    runtime.store().put_json(layout.config_key(run_id), cfg.to_stored())
    return cfg


def new_run(run_id: str = "test-run", seed: int = 0, **ppo: Any) -> RunConfig:
    """Freeze a config in the store, create the run record and policy version 0."""
    cfg = freeze_config(run_id, seed, **ppo)
    runtime.meta().create_run(run_id)
    r = post("policy-updater", {**request_ref(cfg, 0), "mode": "init"})
    assert r.status == 200, r.body
    return cfg


def iterate(cfg: RunConfig, iteration: int, evaluate: bool = False) -> dict[str, Any]:
    """One iteration through all functions, in the DAG's order. Returns each function's JSON result."""
    ref = request_ref(cfg, iteration)
    shards, aggregate = collect_and_aggregate(cfg, ref)
    upd = post("policy-updater", {**ref, "batch": aggregate})
    assert upd.status == 200, upd.body
    out = {"shards": shards, "aggregate": aggregate, "update": upd.json()}
    if evaluate:
        ev = post("policy-evaluator", ref)
        assert ev.status == 200, ev.body
        out["evaluate"] = ev.json()
    return out


def driver(cfg: RunConfig, services: Any, **kw: Any) -> Any:
    """A RunDriver of ``cfg`` on ``services``' engine for its algorithm and stores (``kw``: other options)."""
    from workflows.driver import RunDriver

    return RunDriver(cfg, engine=services.engine_for(cfg), store=services.store, meta=services.meta, **kw)


def drive_until_interrupted(
    cfg: RunConfig, services: Any, n: int, until: Callable[[], bool] | None = None, **kw: Any
) -> None:
    """Drive ``cfg`` and stop it as Ctrl-C does once it reports iteration ``n``.

    ``until``: also wait (up to 120 s) until it holds before stopping, to settle what runs on meanwhile;
    ``kw``: other driver options.
    """
    import pytest

    stop = threading.Event()

    def on_progress(p: Any) -> None:
        if p.iteration >= n:
            deadline = time.monotonic() + 120
            while until is not None and not until() and time.monotonic() < deadline:
                time.sleep(0.005)
            stop.set()

    with pytest.raises(KeyboardInterrupt):
        driver(cfg, services, on_progress=on_progress, stop=stop, **kw).drive()


def straight_and_interrupted(
    services: Any, hparams: Any, seed: int, n: int, prefix: str = "", until: Callable[[], bool] | None = None
) -> tuple[RunConfig, RunConfig]:
    """Run ``<prefix>straight`` driven to the end, ``<prefix>broken`` (same config) interrupted at ``n``.

    ``until``: as :func:`drive_until_interrupted`'s.
    """
    straight = RunConfig.for_algo(f"{prefix}straight", seed, hparams)
    driver(straight, services).drive()
    broken = RunConfig.for_algo(f"{prefix}broken", seed, hparams)
    drive_until_interrupted(broken, services, n, until)
    return straight, broken


@contextmanager
def in_memory_spans() -> Iterator[Any]:
    """Tracing on for the block, every finished span kept in memory: yields the exporter holding them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ftg_common import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
