"""reward-aggregator: GAE(gamma, lambda) advantages and returns over all shards -> one training batch."""

from __future__ import annotations

import numpy as np

from ftg_common import layout, runtime
from ftg_common.algos.gae import compute_gae
from ftg_common.schemas import AggregateRequest, AggregateResult


def aggregate(req: AggregateRequest) -> AggregateResult:
    clock = runtime.Stopwatch()
    cfg = runtime.run_config(req.run_id, req.config_digest)
    ppo = cfg.ppo
    got = sorted(s.shard for s in req.shards)
    if got != list(range(ppo.shards)):
        raise runtime.BadRequest(
            f"shards must hold exactly one result for each of shards 0..{ppo.shards - 1}; got {got}", "shards"
        )
    store = runtime.store()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "log_probs", "values", "adv", "ret")}
    returns: list[float] = []
    for res in sorted(req.shards, key=lambda s: s.shard):
        expected = layout.traj_key(req.run_id, req.iteration, res.shard)
        if res.key != expected:
            # Keys in the body are checked, never trusted as paths.
            raise runtime.BadRequest(f"shard {res.shard} key {res.key!r} is not {expected!r}", "shards")
        t = store.get_tensors(expected)
        adv, ret = compute_gae(
            t["rewards"],
            t["values"],
            t["terminated"].astype(bool),
            t["truncated"].astype(bool),
            t["trunc_values"],
            t["last_values"],
            ppo.gamma,
            ppo.gae_lambda,
        )
        # Env-major flattening ([T, M] -> [M*T]) keeps each env's steps contiguous, as SB3's buffer does.
        parts["obs"].append(t["obs"].swapaxes(0, 1).reshape(-1, t["obs"].shape[-1]))
        act = t["actions"].swapaxes(0, 1)
        parts["actions"].append(act.reshape(-1, *act.shape[2:]))
        parts["log_probs"].append(t["log_probs"].T.reshape(-1))
        parts["values"].append(t["values"].T.reshape(-1))
        parts["adv"].append(adv.T.reshape(-1))
        parts["ret"].append(ret.T.reshape(-1))
        returns.extend(res.episode_returns)
    batch = {
        "obs": np.concatenate(parts["obs"]),
        "actions": np.concatenate(parts["actions"]),
        "log_probs": np.concatenate(parts["log_probs"]),
        "values": np.concatenate(parts["values"]),
        "advantages": np.concatenate(parts["adv"]).astype(np.float32),
        "returns": np.concatenate(parts["ret"]).astype(np.float32),
    }
    key = layout.batch_key(req.run_id, req.iteration)
    store.put_tensors(key, batch)
    adv_all = batch["advantages"]
    return AggregateResult(
        key=key,
        batch_size=int(adv_all.shape[0]),
        steps=sum(s.steps for s in req.shards),
        episodes=len(returns),
        mean_return=float(np.mean(returns)) if returns else None,
        adv_mean=float(adv_all.mean()),
        adv_std=float(adv_all.std()),
        seconds=clock.seconds(),
    )


def handle(event, context):
    return runtime.serve(event, AggregateRequest, aggregate)
