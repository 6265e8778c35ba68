"""Workflow hygiene: the Workflow-level deadline, the TTL and the service account, on Argo and locally.

The iteration templates carry ``activeDeadlineSeconds`` (the one deadline that bounds HTTP steps),
a ``ttlStrategy`` and ``serviceAccountName``; the embedded engine honours the deadline as Argo does
(running steps fail, no retry, nothing new starts) and has nothing to do for the other two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ftg_common import catalog
from tests.workflows.test_local_engine import (
    FAKE_MODULES,
    ThreadedInProcess,
    http_template,
    iteration_params,
    run,
    task,
    workflow,
)
from workflows.engines.compiler import InvalidWorkflowError, UnsupportedWorkflowError, compile_workflow
from workflows.iteration import (
    RETRY_MAX_DURATION_S,
    SERVICE_ACCOUNT,
    WORKFLOW_DEADLINE_S,
    iteration_manifest,
    iteration_workflow,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("off_policy", [False, True])
def test_templates_carry_deadline_ttl_and_service_account(off_policy: bool) -> None:
    spec = iteration_manifest(off_policy=off_policy)["spec"]
    assert spec["serviceAccountName"] == SERVICE_ACCOUNT
    assert spec["activeDeadlineSeconds"] == WORKFLOW_DEADLINE_S
    ttl = spec["ttlStrategy"]
    assert 0 < ttl["secondsAfterSuccess"] <= ttl["secondsAfterFailure"]
    # Every step's retries end after maxDuration and its last attempt may still run its timeout: the
    # deadline must not cut short an iteration that is still making progress that way.
    worst_case = sum(RETRY_MAX_DURATION_S + f.timeout_s for f in catalog.FUNCTIONS)
    assert worst_case <= WORKFLOW_DEADLINE_S
    for tmpl in spec["templates"]:
        if "retryStrategy" in tmpl:
            assert tmpl["retryStrategy"]["backoff"]["maxDuration"] == f"{RETRY_MAX_DURATION_S // 60}m"


def test_the_service_account_and_its_token_secret_are_shipped() -> None:
    docs = list(yaml.safe_load_all((ROOT / "manifests" / "argo" / "rbac.yaml").read_text()))
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert ("ServiceAccount", SERVICE_ACCOUNT) in by_kind
    binding = by_kind[("RoleBinding", "ftg-workflow-agent")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT}]
    token = by_kind[("Secret", f"{SERVICE_ACCOUNT}.service-account-token")]
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == SERVICE_ACCOUNT


def test_the_local_engine_accepts_the_templates_and_keeps_the_deadline() -> None:
    template = iteration_manifest()
    assert compile_workflow(template).active_deadline_s == WORKFLOW_DEADLINE_S
    submitted = iteration_workflow(iteration_params([0, 1]))
    templates = {template["metadata"]["name"]: template}
    assert compile_workflow(submitted, templates).active_deadline_s == WORKFLOW_DEADLINE_S
    # A deadline on the Workflow itself wins over the template's, as Argo merges the two specs.
    submitted["spec"]["activeDeadlineSeconds"] = 30
    submitted["spec"]["ttlStrategy"] = {"secondsAfterCompletion": 60}
    assert compile_workflow(submitted, templates).active_deadline_s == 30


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-1, InvalidWorkflowError, "whole number of seconds"),
        ("60", InvalidWorkflowError, "whole number of seconds"),
        (True, InvalidWorkflowError, "whole number of seconds"),
        (1.5, InvalidWorkflowError, "whole number of seconds"),
        (0, UnsupportedWorkflowError, r"0 \(terminate\)"),
    ],
)
def test_bad_deadlines_are_refused(value: Any, error: type[Exception], message: str) -> None:
    manifest = workflow([task("a", "t")], [http_template("t")])
    manifest["spec"]["activeDeadlineSeconds"] = value
    with pytest.raises(error, match=rf"spec\.activeDeadlineSeconds: .*{message}"):
        compile_workflow(manifest)


def test_deadline_fails_the_running_step_and_starts_nothing_after_it() -> None:
    inv = ThreadedInProcess(FAKE_MODULES)
    manifest = workflow(
        [task("slow", "slow"), task("after", "after", depends="slow")],
        [
            http_template("slow", function="sleepy", body=json.dumps({"sleep": 3}), timeout=30),
            http_template("after"),
        ],
    )
    manifest["spec"]["activeDeadlineSeconds"] = 1
    result = run(manifest, inv)
    assert result.phase == "Failed" and "activeDeadlineSeconds (1s) exceeded" in result.message
    slow = result.node("slow")
    assert (slow.phase, slow.message, slow.attempts) == ("Failed", "Step exceeded its deadline", 1)
    # Its dependent never runs: omitted, as Argo marks the dependents of a failed task.
    after = result.node("after")
    assert (after.phase, after.attempts) == ("Omitted", 0)
    inv.pool.shutdown(wait=False)


def test_deadline_stops_a_step_waiting_to_retry(tmp_path: Path) -> None:
    inv = ThreadedInProcess(FAKE_MODULES)
    body = json.dumps({"state_file": str(tmp_path / "state"), "fail_times": 10})
    # The first retry would wait a minute: the deadline comes first and no second attempt is made.
    retry = {"limit": "3", "retryPolicy": "Always", "backoff": {"duration": "60s"}}
    manifest = workflow([task("f", "f")], [http_template("f", function="flaky", body=body, retry=retry)])
    manifest["spec"]["activeDeadlineSeconds"] = 1
    result = run(manifest, inv)
    node = result.node("f")
    assert (result.phase, node.phase, node.attempts) == ("Failed", "Failed", 1)
    assert node.message == "Step exceeded its deadline"
    inv.pool.shutdown(wait=False)


def test_a_run_within_its_deadline_is_unaffected() -> None:
    manifest = workflow([task("a", "t"), task("b", "t", depends="a")], [http_template("t")])
    manifest["spec"]["activeDeadlineSeconds"] = 600
    result = run(manifest, ThreadedInProcess(FAKE_MODULES))
    assert result.phase == "Succeeded" and {n.phase for n in result.nodes} == {"Succeeded"}
