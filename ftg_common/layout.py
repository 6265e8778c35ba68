"""Object-store key layout (DESIGN.md section 4): the one module that builds keys.

Every key is a pure function of ids and counters, validated as it is built.
"""

from __future__ import annotations

from ftg_common.ids import validate_index, validate_run_id

MAX_VERSION = 1_000_000
MAX_ITER = 1_000_000
MAX_SHARD = 10_000


def run_prefix(run_id: str) -> str:
    """Folder of everything a run stores."""
    return f"runs/{validate_run_id(run_id)}"


def config_key(run_id: str) -> str:
    """The run's RunConfig (``RunConfig.to_stored``)."""
    return f"{run_prefix(run_id)}/config.json"


def policy_key(run_id: str, version: int) -> str:
    """Inference weights of a policy version, with its spec as metadata."""
    return f"{run_prefix(run_id)}/policy/{validate_index(version, 'version', MAX_VERSION):06d}.safetensors"


def ckpt_prefix(run_id: str, version: int) -> str:
    """Checkpoint folder of a policy version."""
    return f"{run_prefix(run_id)}/ckpt/{validate_index(version, 'version', MAX_VERSION):06d}"


def ckpt_weights_key(run_id: str, version: int) -> str:
    """Training parameters of a checkpoint."""
    return f"{ckpt_prefix(run_id, version)}/weights.safetensors"


def ckpt_optim_key(run_id: str, version: int) -> str:
    """Optimizer state of a checkpoint."""
    return f"{ckpt_prefix(run_id, version)}/optimizer.safetensors"


def ckpt_state_key(run_id: str, version: int) -> str:
    """Counters and spec of a checkpoint; written last, so its presence marks a complete one."""
    return f"{ckpt_prefix(run_id, version)}/state.json"


def iter_prefix(run_id: str, iteration: int) -> str:
    """Folder of one iteration's intermediate objects."""
    return f"{run_prefix(run_id)}/iter/{validate_index(iteration, 'iteration', MAX_ITER):06d}"


def traj_key(run_id: str, iteration: int, shard: int) -> str:
    """Trajectory a rollout-collector shard wrote in an iteration."""
    return (
        f"{iter_prefix(run_id, iteration)}/traj/{validate_index(shard, 'shard', MAX_SHARD):04d}.safetensors"
    )


def carry_key(run_id: str, iteration: int, shard: int) -> str:
    """Environment state at the end of a shard's rollout; the next iteration's shard starts from it."""
    return (
        f"{iter_prefix(run_id, iteration)}/carry/{validate_index(shard, 'shard', MAX_SHARD):04d}.safetensors"
    )


def batch_key(run_id: str, iteration: int) -> str:
    """Training batch the reward-aggregator built from an iteration's trajectories."""
    return f"{iter_prefix(run_id, iteration)}/batch.safetensors"


def update_key(run_id: str, iteration: int) -> str:
    """Recorded UpdateResult of an iteration's update, so a retried update answers the same."""
    return f"{iter_prefix(run_id, iteration)}/update.json"


def eval_key(run_id: str, iteration: int) -> str:
    """Evaluation result of the policy an iteration produced."""
    return f"{iter_prefix(run_id, iteration)}/eval.json"


def metrics_key(run_id: str, iteration: int) -> str:
    """The driver's record of an iteration (tracked metrics, timing, cost), written once it is committed.

    The run's summary and its MLflow history are rebuilt from these records, so a crash between the
    update's commit and the driver's bookkeeping loses nothing ``resume`` cannot restore.
    """
    return f"{iter_prefix(run_id, iteration)}/metrics.json"


def sweep_trial_key(sweep_id: str, run_id: str) -> str:
    """The frozen config of one trial of a sweep, written at submit so ``resume`` can rebuild it."""
    return f"sweeps/{validate_run_id(sweep_id, 'sweep_id')}/trials/{validate_run_id(run_id)}.json"


def sweep_runtime_key(sweep_id: str) -> str:
    """What the function runtime spent while the sweep's trials ran (idle GB-s, cold starts, wall time)."""
    return f"sweeps/{validate_run_id(sweep_id, 'sweep_id')}/runtime.json"


MAX_CHUNK = 100_000_000


def replay_prefix(run_id: str) -> str:
    """Folder of a run's replay-buffer chunks (off-policy runs)."""
    return f"{run_prefix(run_id)}/replay"


def replay_chunk_key(run_id: str, chunk: int) -> str:
    """One chunk of the replay buffer: the transitions of one appended shard, in global index order."""
    return f"{replay_prefix(run_id)}/{validate_index(chunk, 'chunk', MAX_CHUNK):08d}.safetensors"
