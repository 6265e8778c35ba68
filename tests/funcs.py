"""Helpers to set up a run and call the four functions in-process through the python3-http contract."""

from __future__ import annotations

import json
from typing import Any

from ftg_common import layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.faas import Response, call


def post(function: str, body: Any) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call(function, raw, {"Content-Type": "application/json"})


def freeze_config(run_id: str = "test-run", seed: int = 0, **ppo: Any) -> RunConfig:
    """Only store the run's frozen config: enough for a function to accept requests of the run."""
    cfg = RunConfig(run_id=run_id, seed=seed, ppo=PPOConfig(**ppo))
    runtime.store().put_json(layout.config_key(run_id), cfg.to_stored())
    return cfg


def new_run(run_id: str = "test-run", seed: int = 0, **ppo: Any) -> RunConfig:
    """Freeze a config in the store, create the run record and policy version 0."""
    cfg = freeze_config(run_id, seed, **ppo)
    runtime.meta().create_run(run_id)
    ref = {"run_id": run_id, "iteration": 0, "config_digest": cfg.digest()}
    r = post("policy-updater", {**ref, "mode": "init"})
    assert r.status == 200, r.body
    return cfg


def iterate(cfg: RunConfig, iteration: int, evaluate: bool = False) -> dict[str, Any]:
    """One iteration through all functions, in the DAG's order. Returns each function's JSON result."""
    ref = {"run_id": cfg.run_id, "iteration": iteration, "config_digest": cfg.digest()}
    shards = []
    for s in range(cfg.ppo.shards):
        r = post("rollout-collector", {**ref, "shard": s})
        assert r.status == 200, r.body
        shards.append(r.json())
    agg = post("reward-aggregator", {**ref, "shards": shards})
    assert agg.status == 200, agg.body
    upd = post("policy-updater", {**ref, "batch": agg.json()})
    assert upd.status == 200, upd.body
    out = {"shards": shards, "aggregate": agg.json(), "update": upd.json()}
    if evaluate:
        ev = post("policy-evaluator", ref)
        assert ev.status == 200, ev.body
        out["evaluate"] = ev.json()
    return out


def driver(cfg: RunConfig, services: Any, **kw: Any) -> Any:
    """A RunDriver of ``cfg`` on ``services``' engine for its algorithm and stores (``kw``: other options)."""
    from workflows.driver import RunDriver

    return RunDriver(cfg, engine=services.engine_for(cfg), store=services.store, meta=services.meta, **kw)
