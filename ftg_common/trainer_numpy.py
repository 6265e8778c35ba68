"""The default PPO update of the policy-updater: the same algorithm as ``trainer.ppo_update``
(SB3 semantics) with hand-written gradients in numpy — several times faster on CPU for small MLPs,
and no torch import on the update path."""

from __future__ import annotations

import numpy as np

from ftg_common import layout
from ftg_common.algos.adam import adam_step, clip_grad_norm
from ftg_common.algos.ppo_numpy import categorical_terms, gaussian_terms, normalize, ppo_loss_grads
from ftg_common.checkpoint_io import load_checkpoint
from ftg_common.config import RunConfig
from ftg_common.envs.seeding import MINIBATCH, derive_rng
from ftg_common.policy.numpy_train import FlatParams, backward, forward
from ftg_common.policy.spec import PolicySpec
from ftg_common.schemas import UpdateResult
from ftg_common.store.base import ObjectStore
from ftg_common.update_plan import StatSums, commit_update, plan_update

ADAM_STEP_KEY = "adam_step"


def ppo_update(store: ObjectStore, cfg: RunConfig, iteration: int, clock) -> UpdateResult:
    """Train version ``iteration`` on batch ``iteration``; write version ``iteration + 1``."""
    ppo, run_id = cfg.ppo, cfg.run_id
    weights, optim_state, state = load_checkpoint(store, run_id, iteration)
    spec = PolicySpec.from_json(state["spec"])
    params = FlatParams(spec).load(weights)
    exp_avg = optim_state.get("exp_avg", np.zeros(params.size, np.float32)).copy()
    exp_avg_sq = optim_state.get("exp_avg_sq", np.zeros(params.size, np.float32)).copy()
    step = int(state.get(ADAM_STEP_KEY, 0))
    batch = store.get_tensors(layout.batch_key(run_id, iteration))
    n = batch["advantages"].shape[0]
    plan = plan_update(ppo, state, iteration, n)
    discrete = spec.action_kind == "discrete"

    rng = derive_rng(cfg.seed, MINIBATCH, iteration)
    sums = StatSums()
    for _epoch in range(ppo.n_epochs):
        perm = rng.permutation(n)
        stop = False
        for start in range(0, n, ppo.batch_size):
            idx = perm[start : start + ppo.batch_size]
            obs, actions = batch["obs"][idx], batch["actions"][idx]
            adv = batch["advantages"][idx]
            if ppo.normalize_advantage:
                adv = normalize(adv)
            head, values, cache = forward(params, obs)
            if discrete:
                terms = categorical_terms(head, actions)
            else:
                terms = gaussian_terms(head, params.view("log_std"), actions)
            lg = ppo_loss_grads(head, values, terms, actions, batch["log_probs"][idx], adv, batch["values"][idx],
                                batch["returns"][idx], plan.clip_range, ppo.vf_coef, ppo.ent_coef, ppo.clip_range_vf)
            if ppo.target_kl is not None and lg.stats["approx_kl"] > 1.5 * ppo.target_kl:
                stop = True
                break
            grad = backward(params, cache, lg.g_head, lg.g_values, lg.g_log_std)
            clip_grad_norm(grad, ppo.max_grad_norm)
            step += 1
            adam_step(params.flat, grad, exp_avg, exp_avg_sq, step, plan.learning_rate, eps=ppo.adam_eps)
            sums.add(lg.stats)
        if stop:
            break
    optim = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    return commit_update(store, cfg, plan, spec, state, params.tensors(), optim, batch, sums, {ADAM_STEP_KEY: step},
                         clock.seconds())
