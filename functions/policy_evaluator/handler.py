"""policy-evaluator: deterministic on-policy evaluation episodes of a policy version (numpy only).

Beside the on-policy Monte-Carlo returns it reports off-policy estimates (IS, WIS, PDWIS, DR with
bootstrap intervals) of the same version from the trajectories its predecessor logged.
"""

from __future__ import annotations

from typing import Any

from ftg_common import faas, layout
from ftg_common.checkpoints import load_numpy_policy, load_q_policy
from ftg_common.envs.seeding import OPE_BOOTSTRAP, derive_rng
from ftg_common.evaluation import run_episodes
from ftg_common.evaluator import eval_envs, eval_record, eval_seeds, eval_version, summarize
from ftg_common.guards import check_iteration, require_committed
from ftg_common.ope import ZeroBehaviourProbabilityError
from ftg_common.ope_logged import ope_values, shard_step_log
from ftg_common.policy.numpy_policy import NumpyPolicy
from ftg_common.policy.qpolicy import QPolicy
from ftg_common.policy.qtable import load_qtable_policy
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import EvalRequest, EvalResult, OPEValue


def evaluate(req: EvalRequest, ctx: FunctionContext) -> EvalResult:
    """Run the evaluation episodes of the policy version iteration ``iteration`` produced.

    Refused before anything is written: an iteration past the run's last (400), a ``version`` other
    than ``iteration + 1`` (400), and a version not committed yet (409).
    """
    hp = ctx.config.hparams
    check_iteration(ctx.config, req.iteration)
    version = eval_version(req.iteration, req.version)
    field = "iteration" if req.version is None else "version"
    require_committed(ctx.meta, req.run_id, version, field, f"evaluating iteration {req.iteration}")
    episodes = req.episodes or hp.eval_episodes
    policy: NumpyPolicy | QPolicy
    if ctx.config.qlearning is not None:
        policy = load_qtable_policy(ctx.store, req.run_id, version)
    elif ctx.config.off_policy:
        policy = load_q_policy(ctx.store, req.run_id, version)
    else:
        policy = load_numpy_policy(ctx.store, req.run_id, version)
    seeds = eval_seeds(ctx.config.seed, version, episodes)
    with eval_envs(hp, episodes) as envs:
        returns, lengths = run_episodes(hp.env_id, hp.env_kwargs, policy, seeds, envs)
    result = summarize(layout.eval_key(req.run_id, req.iteration), version, returns, lengths)
    ope, n_segments, error = off_policy_estimates(req, ctx, policy)
    result = result.model_copy(update={"ope": ope, "ope_episodes": n_segments, "ope_error": error})
    ctx.store.put_json(result.key, eval_record(result, returns, lengths))
    return result


def off_policy_estimates(
    req: EvalRequest, ctx: FunctionContext, policy: NumpyPolicy | QPolicy
) -> tuple[dict[str, OPEValue] | None, int | None, str | None]:
    """IS, WIS, per-decision WIS and DR estimates of the evaluated version from the iteration's shards.

    The shards of iteration i were logged by version i (epsilon-greedy for DQN and Q-learning, the
    previous policy for PPO); the evaluated version is i + 1. Its greedy policy (DQN, Q-learning) or
    its own distribution (PPO) is the target; its Q-network or Q-table, or one step of its critic, is
    the DR model.

    Returns:
        (estimates, logged segments, None), or (None, None, why) when none can be made: continuous
        actions, or a logged action the behaviour policy gave probability 0 (reported, not divided by).
    """
    cfg = ctx.config
    if isinstance(policy, NumpyPolicy) and policy.spec.action_kind != "discrete":
        return None, None, "off-policy estimates need a discrete action space"
    keys = [layout.traj_key(req.run_id, req.iteration, k) for k in range(cfg.hparams.shards)]
    gamma = cfg.hparams.gamma
    # With normalisation: the version's frozen statistics on the env's own observations and rewards.
    logs = [shard_step_log(ctx.store.get_tensors(key), policy, gamma) for key in keys]
    rng = derive_rng(cfg.seed, OPE_BOOTSTRAP, req.iteration)
    try:
        values, n = ope_values(logs, gamma, rng)
    except ZeroBehaviourProbabilityError as exc:
        return None, None, exc.message
    return values, n, None


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, EvalRequest, evaluate)
