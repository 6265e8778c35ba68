"""RunConfig for both families: PPO configs store and hash as before, DQN configs round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from ftg_common.config import DQNConfig, PPOConfig, RunConfig, SweepError, load_sweep
from ftg_common.ope import ZeroBehaviourProbabilityError
from ftg_common.ope_logged import StepLog, ope_values, q_step_log, segment_episodes
from workflows.compare import TrialRow, compare, to_markdown

# A PPO config as the code before DQN stored it (digest computed then): it must load and keep its digest.
STORED_PPO = {
    "run_id": "x",
    "seed": 3,
    "algo": "ppo",
    "ppo": PPOConfig().model_dump(mode="json"),
    "sweep_id": "s",
    "config_name": "c",
    "digest": "573c0421a0fa8dc4",
}


def test_a_stored_ppo_config_loads_with_its_digest() -> None:
    cfg = RunConfig.from_stored(STORED_PPO)
    assert cfg.algo == "ppo" and cfg.dqn is None and cfg.hparams is cfg.ppo
    assert cfg.to_stored() == STORED_PPO
    assert "dqn" not in cfg.model_dump(mode="json")


def test_a_dqn_config_round_trips_and_infers_its_algo() -> None:
    cfg = RunConfig(run_id="d", seed=1, dqn=DQNConfig(total_steps=1024))
    assert cfg.algo == "dqn" and cfg.off_policy and cfg.hparams.n_iterations == 4
    stored = cfg.to_stored()
    assert "ppo" not in stored and stored["dqn"]["algo"] == "dqn"
    assert RunConfig.from_stored(stored) == cfg
    assert RunConfig.for_algo("d", 1, DQNConfig(total_steps=1024)) == cfg
    with pytest.raises(ValueError, match="not ppo"):
        _ = cfg.ppo_config


def test_the_algo_must_match_its_hyperparameters() -> None:
    with pytest.raises(ValidationError, match="exactly its own"):
        RunConfig(run_id="m", seed=0, algo="ppo", dqn=DQNConfig())
    with pytest.raises(ValidationError, match="exactly its own"):
        RunConfig(run_id="m", seed=0, algo="ppo")


def test_a_sweep_mixes_algorithms_with_field_named_errors() -> None:
    text = """
name: ab
configs:
  p: {total_steps: 1024}
  d: {algo: dqn, total_steps: 1024}
"""
    trials = load_sweep(text).trial_configs()
    assert [type(t) for t in trials.values()] == [PPOConfig, DQNConfig]
    with pytest.raises(SweepError, match=r"configs\.d\.buffer_size"):
        load_sweep(text.replace("algo: dqn,", "algo: dqn, buffer_size: 0,"))
    with pytest.raises(SweepError, match=r"configs\.d\.algo: unsupported algorithm 'a2c'"):
        load_sweep(text.replace("algo: dqn", "algo: a2c"))


def _row(config: str, algo: str, final: float) -> TrialRow:
    return TrialRow(f"r-{config}", config, 0, "finished", final, 1000, 1.0, 1.5, 2.0, 2048, 0.5, algo)


def test_compare_shows_the_algorithm_of_each_configuration() -> None:
    rows = compare([_row("ppo-zoo", "ppo", 500.0), _row("dqn-zoo", "dqn", 480.0)], 1e-5, 0.04)
    assert [(r.config, r.algo) for r in rows] == [("ppo-zoo", "ppo"), ("dqn-zoo", "dqn")]
    md = to_markdown(rows, 475)
    assert "| config | algorithm |" in md and "| dqn-zoo | dqn |" in md
    # Rows without an algorithm (stored before DQN existed) are PPO.
    legacy = TrialRow("r", "a", 0, "finished", 1.0, None, None, None, 1.0, 1, 0.1)
    assert compare([legacy], 0, 0)[0].algo == "ppo"


def _log(t: int, m: int, ends: dict[tuple[int, int], str]) -> dict[str, np.ndarray]:
    term, trunc = np.zeros((t, m), np.uint8), np.zeros((t, m), np.uint8)
    for (i, j), kind in ends.items():
        (term if kind == "term" else trunc)[i, j] = 1
    return {
        "rewards": np.ones((t, m), np.float32),
        "actions": np.zeros((t, m), np.int64),
        "terminated": term,
        "truncated": trunc,
        "behaviour_probs": np.full((t, m), 0.5, np.float32),
    }


def test_shards_split_into_segments_at_episode_ends() -> None:
    shard = _log(4, 2, {(1, 0): "term", (2, 1): "trunc"})
    q = np.zeros((4, 2, 2), np.float32)
    q[..., 0] = 1.0  # greedy action 0, Q = 1
    ep = segment_episodes([q_step_log(shard, q, np.full((2, 2), 3.0, np.float32))])
    # env 0: [0, 1] terminated, [2, 3] cut by the log; env 1: [0, 2] time limit, [3] cut by the log.
    assert ep.lengths.tolist() == [2, 2, 3, 1]
    assert ep.terminated.tolist() == [True, False, False, False]
    # Only segments the log cuts bootstrap from the model (max Q of the last next observation).
    assert ep.v_end.tolist() == [0.0, 3.0, 0.0, 3.0]
    values, n = ope_values(
        [q_step_log(shard, q, np.full((2, 2), 3.0, np.float32))], 1.0, np.random.default_rng(0)
    )
    assert n == 4 and values["wis"].value is not None and values["dr"].ci_low is not None


def test_zero_behaviour_probability_is_reported_not_divided_by() -> None:
    shard = _log(3, 1, {})
    shard["behaviour_probs"][1, 0] = 0.0
    log = q_step_log(shard, np.zeros((3, 1, 2), np.float32), np.zeros((1, 2), np.float32))
    assert isinstance(log, StepLog)
    with pytest.raises(ZeroBehaviourProbabilityError, match="episode 0 step 1"):
        ope_values([log], 0.99, np.random.default_rng(0))
