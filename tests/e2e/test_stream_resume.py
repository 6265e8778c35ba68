"""Streamed iterations end to end: the driver records each one while the next runs, the weights are the
ones a run per iteration makes, and a run stopped mid-stream resumes bit for bit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ftg_common import layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from tests.funcs import SMALL_PPO, straight_and_interrupted
from tests.funcs import driver as _driver


@pytest.fixture
def streaming(ftg_env: Any) -> Iterator[Any]:
    """The embedded engine on two warm workers, streaming 4 iterations at a time."""
    from ftg_common.settings import get_settings
    from workflows.sweep import open_services

    settings = get_settings().model_copy(update={"local_workers": 2, "local_iterations_per_workflow": 4})
    svc = open_services(settings, tracking=False)
    assert svc.engine.iterations_per_workflow == 4
    yield svc
    svc.close()


def _weights(run_id: str, version: int) -> bytes:
    return runtime.store().get_bytes(layout.ckpt_weights_key(run_id, version))


def test_a_streamed_run_stopped_mid_stream_resumes_to_the_weights_of_a_run_per_iteration(
    streaming: Any, services: Any
) -> None:
    ppo = PPOConfig(**SMALL_PPO)
    last = ppo.n_iterations
    plain = RunConfig.for_algo("plain", 5, ppo)
    _driver(plain, services).drive()  # one Workflow run per iteration, in process

    # Stopped once 6 iterations are recorded (0..5), while the stream (4..7) runs on. How far it got
    # before the stop reached it is a race, so the race is settled: the stop waits until iteration 6's
    # update has committed, which leaves a committed iteration without a record, as a Ctrl-C can.
    _, broken = straight_and_interrupted(
        streaming, ppo, seed=5, n=6, until=lambda: streaming.meta.get_run("broken")["last_iteration"] >= 6
    )
    rec = streaming.meta.get_run("broken")
    committed = rec["last_iteration"]
    # 7 only if the stream ended iteration 7 too before it saw the stop: it is the stream's last.
    assert rec["status"] == "interrupted" and committed in (6, 7)
    store = runtime.store()
    assert [store.exists(layout.metrics_key("broken", i)) for i in range(committed + 1)] == (
        [True] * 6 + [False] * (committed - 5)
    )

    summary = _driver(broken, streaming).drive()
    assert streaming.meta.get_run("broken")["status"] == "finished"
    assert summary.steps == ppo.total_steps
    recovered = [i for i in range(last) if store.get_json(layout.metrics_key("broken", i)).get("recovered")]
    assert recovered == list(range(6, committed + 1))  # rebuilt from its committed objects, not rerun
    reference = _weights("plain", last)
    assert _weights("straight", last) == reference
    assert _weights("broken", last) == reference
