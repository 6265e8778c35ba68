"""rollout-collector: step a shard of vectorised gymnasium envs with the current policy (numpy only)."""

from __future__ import annotations

import json
from functools import lru_cache

from ftg_common import layout, runtime
from ftg_common.envs.seeding import ACTIONS, derive_rng
from ftg_common.envs.vector import CarryMismatchError, EnvCarry, ShardEnvs
from ftg_common.policy_io import load_numpy_policy
from ftg_common.rollout import collect_rollout
from ftg_common.schemas import CollectRequest, CollectResult


@lru_cache(maxsize=16)
def _envs(env_id: str, kwargs_json: str, n_envs: int, seed: int, offset: int) -> ShardEnvs:
    # Env objects are reused by a warm instance; each call fully restores their state from the carry.
    return ShardEnvs(env_id, json.loads(kwargs_json), n_envs, seed, offset)


def collect(req: CollectRequest) -> CollectResult:
    clock = runtime.Stopwatch()
    cfg = runtime.run_config(req.run_id, req.config_digest)
    ppo = cfg.ppo
    if req.shard >= ppo.shards:
        raise runtime.BadRequest(f"shard {req.shard} out of range: run has {ppo.shards} shards", "shard")
    store = runtime.store()
    m = ppo.envs_per_shard
    envs = _envs(ppo.env_id, json.dumps(ppo.env_kwargs, sort_keys=True), m, cfg.seed, req.shard * m)
    # The policy that acts in iteration i is version i (version 0 is the initial policy).
    policy = load_numpy_policy(store, req.run_id, req.iteration)
    carry = None
    if req.iteration > 0:
        arrays, meta = store.get_tensors_with_metadata(layout.carry_key(req.run_id, req.iteration - 1, req.shard))
        carry = EnvCarry.from_stored(arrays, meta)
    try:
        envs.start(carry)
    except CarryMismatchError as exc:
        raise runtime.Conflict(str(exc), "shard") from exc
    rng = derive_rng(cfg.seed, ACTIONS, req.iteration, req.shard)
    rollout = collect_rollout(envs, policy, ppo.n_steps, rng)
    key = layout.traj_key(req.run_id, req.iteration, req.shard)
    store.put_tensors(key, rollout.tensors(), metadata={"policy_version": str(req.iteration)})
    new_carry = envs.carry()
    carry_key = layout.carry_key(req.run_id, req.iteration, req.shard)
    store.put_tensors(carry_key, new_carry.arrays, metadata=new_carry.metadata())
    return CollectResult(
        key=key,
        carry_key=carry_key,
        shard=req.shard,
        steps=ppo.n_steps * m,
        policy_version=req.iteration,
        episode_returns=[round(r, 6) for r in rollout.episode_returns],
        episode_lengths=rollout.episode_lengths,
        seconds=clock.seconds(),
    )


def handle(event, context):
    return runtime.serve(event, CollectRequest, collect)
