"""Streamed iterations end to end: the driver records each one while the next runs, the weights are the
ones a run per iteration makes, and a run stopped mid-stream resumes bit for bit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ftg_common import layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from tests.funcs import SMALL_PPO
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
    last = ppo.n_iterations - 1
    plain = RunConfig.for_algo("plain", 5, ppo)
    _driver(plain, services).drive()  # one Workflow run per iteration, in process
    straight = RunConfig.for_algo("straight", 5, ppo)
    _driver(straight, streaming).drive()

    # Stopped once 6 iterations are recorded (0..5), while the stream (4..7) runs on. How far it got
    # before the stop reached it is a race, so the race is settled: the stop waits until iteration 6's
    # update has committed, which leaves a committed iteration without a record, as a Ctrl-C can.
    broken = RunConfig.for_algo("broken", 5, ppo)
    stop = threading.Event()

    def on_progress(p: Any) -> None:
        if p.iteration >= 6 and not stop.is_set():
            deadline = time.monotonic() + 120
            while streaming.meta.get_run("broken")["last_iteration"] < 6 and time.monotonic() < deadline:
                time.sleep(0.005)
            stop.set()

    with pytest.raises(KeyboardInterrupt):
        _driver(broken, streaming, on_progress=on_progress, stop=stop).drive()
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
    recovered = [
        i for i in range(last + 1) if store.get_json(layout.metrics_key("broken", i)).get("recovered")
    ]
    assert recovered == list(range(6, committed + 1))  # rebuilt from its committed objects, not rerun
    reference = _weights("plain", last + 1)
    assert _weights("straight", last + 1) == reference
    assert _weights("broken", last + 1) == reference
