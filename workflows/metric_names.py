"""Names of the metrics runs log to MLflow, defined once.

They follow the namespaces Stable-Baselines3 and CleanRL users know (``train/``, ``losses/``, ``time/``,
``eval/``), so a learning curve here reads like one from those libraries. Per-iteration metrics are
logged by the driver at step = environment steps so far; ``summary/`` metrics are logged once per trial
when a sweep is finalized.
"""

from __future__ import annotations

from typing import Final

# --- per iteration: rollouts (reward-aggregator) -----------------------------------------------------
EPISODE_RETURN: Final = "train/episode_return"  # mean return of the episodes finished in the iteration
EPISODES: Final = "train/episodes"  # episodes finished in the iteration

# --- per iteration: the update (policy-updater) ------------------------------------------------------
POLICY_LOSS: Final = "losses/policy_loss"
VALUE_LOSS: Final = "losses/value_loss"
ENTROPY: Final = "losses/entropy"
APPROX_KL: Final = "losses/approx_kl"
CLIP_FRACTION: Final = "losses/clip_fraction"
EXPLAINED_VARIANCE: Final = "losses/explained_variance"
LEARNING_RATE: Final = "train/learning_rate"  # after the schedule, as used by this update
CLIP_RANGE: Final = "train/clip_range"
# DQN (SB3 logs its TD loss as train/loss)
TD_LOSS: Final = "losses/td_loss"
Q_MEAN: Final = "train/q_mean"  # mean Q(s, a) of the sampled minibatches
GRAD_NORM: Final = "train/grad_norm"  # before clipping
REPLAY_SIZE: Final = "train/replay_size"  # transitions the buffer holds for sampling
REPLAY_CHUNKS_READ: Final = "train/replay_chunks_read"  # chunks the update's sample read

# --- per iteration: time and cost --------------------------------------------------------------------
ITERATIONS: Final = "time/iterations"  # iterations completed (SB3's meaning)
ITERATION_S: Final = "time/iteration_s"  # wall time of this iteration's Workflow
STEPS_PER_S: Final = "time/steps_per_s"  # env steps per second over the last 20 iterations
WALL_S: Final = "time/wall_s"  # wall time of the run so far, evaluation included
COST_GB_S: Final = "cost/gb_s"  # serverless cost of the run so far

# --- per evaluation (policy-evaluator) ---------------------------------------------------------------
EVAL_MEAN_RETURN: Final = "eval/mean_return"
EVAL_IQM_RETURN: Final = "eval/iqm_return"
EVAL_STD_RETURN: Final = "eval/std_return"
EVAL_MEAN_LENGTH: Final = "eval/mean_length"
# Off-policy estimates of the evaluated version from its predecessor's logged trajectories; each also
# as <name>_ci_low and <name>_ci_high (bootstrap interval).
OPE_PREFIX: Final = "ope/"
OPE_REPORTED: Final = ("is", "wis", "pdwis", "dr")

# --- once per trial, when the sweep is finalized (from the run's RunSummary) -------------------------
FINAL_RETURN: Final = "summary/final_return"  # mean return of the last evaluation
FINAL_IQM: Final = "summary/final_iqm"  # IQM return of the last evaluation
STEPS_TO_THRESHOLD: Final = "summary/steps_to_threshold"
TIME_TO_THRESHOLD_S: Final = "summary/time_to_threshold_s"  # training time only
TIME_TO_THRESHOLD_INCL_EVAL_S: Final = "summary/time_to_threshold_incl_eval_s"
TOTAL_WALL_S: Final = "summary/wall_s"
TOTAL_COST_GB_S: Final = "summary/cost_gb_s"
INVOCATIONS: Final = "summary/invocations"  # function calls, retries included
