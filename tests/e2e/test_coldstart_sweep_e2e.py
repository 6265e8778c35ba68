"""The cold-start sweep's Q-learning configuration, trained briefly through the four functions, beats random.

A short run of ``sweeps/coldstart.yaml``'s ``qlearning`` (24,000 environment steps, seed 0) on the
embedded engine; its greedy table, on held-out days (Friday and Sunday) with seeds no training episode
used, earns more reward than a uniformly random pre-warm delta on the same episodes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from ftg_common import runtime
from ftg_common.config import RunConfig
from ftg_common.envs.coldstart.registration import COLDSTART_ID
from ftg_common.evaluation import run_episodes
from ftg_common.policy.qtable import load_qtable_policy
from tests.funcs import driver as _driver

SWEEP = Path(__file__).resolve().parents[2] / "sweeps" / "coldstart.yaml"
HELDOUT = [7_000_000 + k for k in range(8)]


class _Uniform:
    """A uniformly random action per observation, from its own seeded generator."""

    def __init__(self, n_actions: int, seed: int) -> None:
        self.n, self.rng = n_actions, np.random.default_rng(seed)

    def act_deterministic(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, self.n, size=obs.shape[0])


@pytest.mark.slow
def test_a_short_coldstart_qlearning_run_beats_random_on_held_out_days(services) -> None:
    from workflows.ppo_sweep import _read_sweep

    args = argparse.Namespace(seeds="0", max_parallel=None, total_steps=24_000, only="qlearning", zoo=None)
    hp = _read_sweep(str(SWEEP), args).trial_configs()["qlearning"]
    cfg = RunConfig.for_algo("coldstart-q", 0, hp)
    summary = _driver(cfg, services).drive()
    assert summary.steps == 24_000
    table = load_qtable_policy(runtime.store(), "coldstart-q", hp.n_iterations)
    assert table.table.shape == (4 * 8 * 2, 11)
    heldout = {**hp.env_kwargs, "days": [4, 6]}
    greedy, _ = run_episodes(COLDSTART_ID, heldout, table, HELDOUT)
    uniform, _ = run_episodes(COLDSTART_ID, heldout, _Uniform(11, seed=0), HELDOUT)  # type: ignore[arg-type]
    # About -35 against -46 per episode; at this budget the table does not yet beat holding (the 10-minute
    # keep-alive, about -30): the sweep's 96,000 steps do (docs/coldstart-report.md).
    assert greedy.mean() > uniform.mean()
