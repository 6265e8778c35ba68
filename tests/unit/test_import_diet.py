"""A function's cold start imports only what it uses (no timings here: benchmarks/bench_coldstart.py).

Each handler is imported the way its serving process does (``functions.serve``, then the handler) in a
fresh interpreter, and the modules it left loaded are checked: a heavy library reached through a stray
import would cost every cold start of every replica.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftg_common.catalog import FUNCTIONS, FunctionSpec

ROOT = Path(__file__).resolve().parents[2]

# Never on a function's import path: training-side and orchestration-side libraries, and the cloud and
# Redis clients, which a store or metadata URL naming them imports on first use, not before.
NEVER = ("torch", "mlflow", "hera", "boto3", "botocore", "redis", "sqlalchemy", "pandas", "matplotlib")


def _loaded_after_import(module: str, tmp_path: Path) -> set[str]:
    code = f"import functions.serve, {module}, sys; print('\\n'.join(sorted(sys.modules)))"
    # A file store and SQLite metadata: nothing in the settings asks for an S3 or Redis client.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTG_")}
    env.update(FTG_STORE_URL=f"file://{tmp_path}/store", FTG_META_URL=f"sqlite:///{tmp_path}/meta.db")
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(out.stdout.split())


def _top_level(modules: set[str]) -> set[str]:
    return {m.partition(".")[0] for m in modules}


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_a_handler_imports_no_heavy_library(spec: FunctionSpec, tmp_path: Path) -> None:
    module = spec.module
    loaded = _top_level(_loaded_after_import(module, tmp_path))
    assert module.partition(".")[0] in loaded  # the import really ran
    assert sorted(loaded.intersection(NEVER)) == []


def test_rollout_collector_loads_no_off_policy_or_training_code(tmp_path: Path) -> None:
    loaded = _loaded_after_import("functions.rollout_collector.handler", tmp_path)
    assert "numpy" in loaded and "gymnasium" in loaded
    # PPO rollouts need neither the updater's code nor the off-policy rollout: those load on first use.
    stray = sorted(
        m
        for m in loaded
        if m.startswith(("ftg_common.update", "ftg_common.replay", "ftg_common.rollout_offpolicy"))
    )
    assert stray == []


def test_aggregator_and_updater_load_no_gymnasium_and_no_replay_buffer(tmp_path: Path) -> None:
    # Neither steps an env: the aggregator reads arrays, and the updater needs an env's spaces only to
    # write version 0 (mode init), which imports gymnasium when it runs. The replay buffer and the DQN
    # update load on an off-policy run's first call.
    for module in ("functions.reward_aggregator.handler", "functions.policy_updater.handler"):
        loaded = _loaded_after_import(module, tmp_path)
        assert "gymnasium" not in _top_level(loaded), module
        stray = sorted(m for m in loaded if m.startswith(("ftg_common.replay", "ftg_common.update.dqn")))
        assert stray == [], module
