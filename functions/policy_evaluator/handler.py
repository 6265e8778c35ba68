"""policy-evaluator: deterministic on-policy evaluation episodes of a policy version (numpy only)."""

from __future__ import annotations

from typing import Any

from ftg_common import faas, layout
from ftg_common.checkpoints import load_numpy_policy
from ftg_common.evaluation import run_episodes
from ftg_common.evaluator import eval_envs, eval_record, eval_seeds, eval_version, summarize
from ftg_common.guards import check_iteration, require_committed
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import EvalRequest, EvalResult


def evaluate(req: EvalRequest, ctx: FunctionContext) -> EvalResult:
    """Run the evaluation episodes of the policy version iteration ``iteration`` produced.

    Refused before anything is written: an iteration past the run's last (400), a ``version`` other
    than ``iteration + 1`` (400), and a version not committed yet (409).
    """
    ppo = ctx.config.ppo
    check_iteration(ctx.config, req.iteration)
    version = eval_version(req.iteration, req.version)
    field = "iteration" if req.version is None else "version"
    require_committed(ctx.meta, req.run_id, version, field, f"evaluating iteration {req.iteration}")
    episodes = req.episodes or ppo.eval_episodes
    policy = load_numpy_policy(ctx.store, req.run_id, version)
    seeds = eval_seeds(ctx.config.seed, version, episodes)
    with eval_envs(ppo, episodes) as envs:
        returns, lengths = run_episodes(ppo.env_id, ppo.env_kwargs, policy, seeds, envs)
    result = summarize(layout.eval_key(req.run_id, req.iteration), version, returns, lengths)
    ctx.store.put_json(result.key, eval_record(result, returns, lengths))
    return result


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, EvalRequest, evaluate)
