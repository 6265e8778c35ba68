"""The driver's Prometheus metrics: what a sweep's progress looks like to a scraper."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from workflows.driver import TrialProgress
from workflows.training_metrics import TrainingMetrics


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_progress_of_two_trials_is_served_per_trial_and_config() -> None:
    m = TrainingMetrics().serve(0)
    try:
        m(
            TrialProgress(
                "a-0", "zoo", 0, 1, 4, 256, 1024, train_return=20.0, steps_per_second=900.0, iteration_s=0.04
            )
        )
        m(
            TrialProgress(
                "a-0", "zoo", 0, 2, 4, 512, 1024, train_return=30.0, eval_return=55.5, iteration_s=0.06
            )
        )
        m(TrialProgress("b-0", "cleanrl", 0, 1, 4, 128, 1024, iteration_s=0.5))
        m(TrialProgress("a-0", "zoo", 0, 4, 4, 1024, 1024, status="finished", eval_return=500.0))
        got = _scrape(m.port)
    finally:
        m.close()
    a = (("config", "zoo"), ("run_id", "a-0"))
    assert got[("ftg_env_steps", a)] == 1024
    assert got[("ftg_iterations_total", a)] == 2  # the end-of-trial report is not an iteration
    assert got[("ftg_episode_return", a)] == 30.0 and got[("ftg_eval_return", a)] == 500.0
    assert got[("ftg_env_steps_per_second", a)] == 900.0
    assert got[("ftg_iteration_seconds_count", (("config", "zoo"),))] == 2
    assert got[("ftg_iteration_seconds_sum", (("config", "zoo"),))] == 0.1
    assert got[("ftg_iteration_seconds_bucket", (("config", "cleanrl"), ("le", "0.5")))] == 1
    assert got[("ftg_trials", (("status", "running"),))] == 1  # b-0
    assert got[("ftg_trials", (("status", "finished"),))] == 1  # a-0
