"""policy-evaluator: deterministic on-policy evaluation episodes of a policy version (numpy only)."""

from __future__ import annotations

import json
from functools import lru_cache

from ftg_common import layout, runtime
from ftg_common.algos.stats import iqm
from ftg_common.envs.factory import make_env
from ftg_common.envs.seeding import EVAL, derive_seed
from ftg_common.evaluation import run_episodes
from ftg_common.policy_io import load_numpy_policy
from ftg_common.schemas import EvalRequest, EvalResult


@lru_cache(maxsize=8)
def _envs(env_id: str, kwargs_json: str, count: int) -> list:
    return [make_env(env_id, json.loads(kwargs_json)) for _ in range(count)]


def evaluate(req: EvalRequest) -> EvalResult:
    clock = runtime.Stopwatch()
    cfg = runtime.run_config(req.run_id, req.config_digest)
    ppo = cfg.ppo
    version = req.iteration + 1 if req.version is None else req.version
    episodes = req.episodes or ppo.eval_episodes
    policy = load_numpy_policy(runtime.store(), req.run_id, version)
    seeds = [derive_seed(cfg.seed, EVAL, version, k) for k in range(episodes)]
    envs = _envs(ppo.env_id, json.dumps(ppo.env_kwargs, sort_keys=True), episodes)
    returns, lengths = run_episodes(ppo.env_id, ppo.env_kwargs, policy, seeds, envs)
    result = EvalResult(
        key=layout.eval_key(req.run_id, req.iteration),
        version=version,
        episodes=episodes,
        mean_return=float(returns.mean()),
        std_return=float(returns.std()),
        iqm_return=float(iqm(returns)),
        min_return=float(returns.min()),
        max_return=float(returns.max()),
        mean_length=float(lengths.mean()),
        seconds=clock.seconds(),
    )
    runtime.store().put_json(
        result.key, {**result.model_dump(mode="json"), "returns": returns.tolist(), "lengths": lengths.tolist()}
    )
    return result


def handle(event, context):
    return runtime.serve(event, EvalRequest, evaluate)
