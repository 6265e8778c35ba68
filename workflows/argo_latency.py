"""How long Argo's orchestration makes a Workflow of HTTP steps take: a model in simulated time.

Where the time goes on a cluster (Argo Workflows v3.5-v4.1.2; docs/argo-latency.md):

- **Workflow start.** The controller sees the new Workflow at once (an informer event), sets its nodes
  and a WorkflowTaskSet, and starts one agent pod (``argoexec agent``) per Workflow, which runs every HTTP
  step of it. Nothing runs before the pod does. Kubernetes' own service-level objective for the
  start-up of schedulable stateless pods (creation to containers started, excluding image pulls and
  init containers) is 5 s at the 99th percentile (kubernetes/community, sig-scalability/slos/slos.md);
  that bound is the default here.
- **Result patch period.** The agent runs a level's calls as soon as their tasks appear in the task set,
  but writes the results back on a ticker, every ``ARGO_AGENT_PATCH_RATE``, whose default is the
  controller's ``DEFAULT_REQUEUE_TIME`` (Argo's docs/environment-variables.md; the agent falls back to
  10 s in workflow/executor/agent.go). The ticker starts with the agent.
- **Per-DAG-level delay.** The controller reads the patched results and schedules the next level when it
  reconciles the Workflow, which it re-queues every ``DEFAULT_REQUEUE_TIME`` (default 10 s,
  docs/environment-variables.md). Modelled as the next tick of that period counted from submission; an
  informer-triggered reconcile can come sooner, so this is the slow end of the range.
- **The driver** polls the Workflow every ``FTG_ARGO_POLL_SECONDS`` (1 s) from its submission.

Defaults are Argo's (10 s); :data:`SHIPPED` is the 1 s controller setting in
``manifests/argo/controller/workflow-controller-env.yaml``. A skipped step (``evaluate`` when not due) is
decided in the reconcile that finishes its dependency, so it is no level. Everything is a pure function
of its arguments: no clock is read and nothing sleeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Ticks are compared in floating point; a result landing within this of a tick counts as on it.
_EPS = 1e-9


@dataclass(frozen=True)
class ArgoTiming:
    """The settings that decide Argo's orchestration latency, in seconds.

    Attributes:
        requeue_s: the controller's ``DEFAULT_REQUEUE_TIME``: period of its reconciles of a Workflow.
        patch_s: the agent's ``ARGO_AGENT_PATCH_RATE``; None follows ``requeue_s`` as Argo does.
        agent_start_s: submission to a running agent pod (scheduling and container start).
        poll_s: the driver's poll period (``FTG_ARGO_POLL_SECONDS``).
    """

    requeue_s: float = 10.0
    patch_s: float | None = None
    agent_start_s: float = 5.0
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("requeue_s", "patch_period_s", "poll_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)!r}")
        if self.agent_start_s < 0:
            raise ValueError(f"agent_start_s: must not be negative, got {self.agent_start_s!r}")

    @property
    def patch_period_s(self) -> float:
        """The agent's patch period in effect."""
        return self.requeue_s if self.patch_s is None else self.patch_s


DEFAULT = ArgoTiming()
SHIPPED = ArgoTiming(requeue_s=1.0, patch_s=1.0)


def next_tick(t: float, phase: float, period: float) -> float:
    """The first of the ticks ``phase + n * period`` (n = 0, 1, ...) at or after ``t``."""
    if t <= phase:
        return phase
    return phase + math.ceil((t - phase) / period - _EPS) * period


@dataclass(frozen=True)
class Timeline:
    """One Workflow's timeline, in seconds after its submission.

    Attributes:
        starts: when each DAG level's calls start.
        finished: when the controller marks the Workflow done (the reconcile after its last level).
        noticed: when the driver's poll sees it done.
    """

    starts: tuple[float, ...]
    finished: float
    noticed: float


def workflow_timeline(levels: Sequence[float], timing: ArgoTiming = DEFAULT) -> Timeline:
    """When each level of a Workflow runs and when the driver sees it done.

    Args:
        levels: seconds of each DAG level that calls functions, in order (the slowest call of the
            level, retries included); a chain of K iterations is its iterations' levels in a row.
        timing: the cluster's settings.

    Returns:
        The timeline; each level starts at the controller reconcile after the agent's patch that
        carried the previous level's results.
    """
    patch = timing.patch_period_s
    agent = timing.agent_start_s
    t = agent  # the first level's tasks wait in the task set for the agent to start
    starts = []
    for compute in levels:
        if compute < 0:
            raise ValueError(f"levels: a level cannot take {compute!r} s")
        starts.append(t)
        # The agent's ticker starts with it; its first patch comes one period later.
        visible = next_tick(t + compute, agent + patch, patch)
        t = next_tick(visible, 0.0, timing.requeue_s)
    return Timeline(tuple(starts), t, next_tick(t, 0.0, timing.poll_s))


def workflow_seconds(levels: Sequence[float], timing: ArgoTiming = DEFAULT) -> float:
    """Submission to the driver seeing the Workflow done (see :func:`workflow_timeline`)."""
    return workflow_timeline(levels, timing).noticed
