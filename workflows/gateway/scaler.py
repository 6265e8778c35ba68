"""Scaling decisions, as pure functions of a snapshot of the replicas and a time.

The gateway (:mod:`workflows.gateway.fleet`) takes a snapshot of every function under its lock, asks
:func:`plan` what to start and stop, and applies the answer; nothing here touches a process or a clock.

The rules, from the OpenFaaS labels of each function (:class:`ScaleRule`):

* **demand** is the calls in flight plus the calls waiting for a replica; a function wants
  ``ceil(demand / target)`` replicas (``com.openfaas.scale.target``: in-flight calls per replica, and
  the gateway never sends a replica more than ``target`` at once);
* the **floor** is ``com.openfaas.scale.min`` (and the last warm replica is kept once there is one), or
  the count set by hand; with ``com.openfaas.scale.zero`` the floor drops to 0 when the function has been
  idle (nothing in flight, arriving or set by hand) for ``com.openfaas.scale.zero-duration``;
* the function gets ``min(max(wanted, floor), max)`` replicas, and the machine-wide cap bounds the sum
  over functions. Starts go first to the functions with the most waiting calls; when the cap blocks a
  function that has calls waiting, idle replicas of functions with none waiting are reclaimed for it;
* a replica above that count is stopped once it has been idle for the scale-down delay (a stabilisation
  window, so a DAG's next step finds it warm); replicas still starting are never stopped by the
  autoscaler, busy ones only by hand (they are drained first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScaleRule:
    """A function's scaling labels (``com.openfaas.scale.*``); defaults are OpenFaaS's.

    Attributes:
        min: replicas kept while the function is active (``.min``; 0 allowed).
        max: most replicas (``.max``).
        target: in-flight calls per replica (``.target`` with ``.type: capacity``).
        zero: whether the function scales to zero when idle (``.zero``).
        zero_duration: idle seconds before it does (``.zero-duration``).
    """

    min: int = 1
    max: int = 20
    target: int = 50
    zero: bool = False
    zero_duration: float = 900.0

    def __post_init__(self) -> None:
        if self.min < 0 or self.max < 1 or self.min > self.max:
            raise ValueError(f"scale min {self.min} and max {self.max} need 0 <= min <= max and max >= 1")
        if self.target < 1:
            raise ValueError(f"scale target must be at least 1, got {self.target}")
        if self.zero_duration < 0:
            raise ValueError(f"zero-duration must not be negative, got {self.zero_duration}")


@dataclass(frozen=True)
class ReplicaView:
    """One replica, starting or ready (a draining replica is not in a view).

    Attributes:
        id: the replica's number (unique in the gateway).
        ready: whether it has answered its health check.
        inflight: calls it is serving now.
        idle_since: when its last call ended (or when it became ready); None while busy or starting.
    """

    id: int
    ready: bool
    inflight: int = 0
    idle_since: float | None = None


@dataclass(frozen=True)
class FunctionView:
    """One function at one instant.

    Attributes:
        name: the function.
        rule: its scaling labels.
        replicas: its replicas that are starting or ready.
        waiting: calls waiting for a replica.
        last_active: when a call last arrived or ended, or the count was last set by hand.
        pinned: the replica count set by hand (``/system/scale-function``), if any.
        start_blocked: a replica failed to start moments ago: do not start another yet.
    """

    name: str
    rule: ScaleRule
    replicas: tuple[ReplicaView, ...] = ()
    waiting: int = 0
    last_active: float = 0.0
    pinned: int | None = None
    start_blocked: bool = False

    @property
    def inflight(self) -> int:
        """Calls in flight on its replicas."""
        return sum(r.inflight for r in self.replicas)


@dataclass(frozen=True)
class Decision:
    """What to do with one function.

    Attributes:
        start: replicas to start.
        stop: ids of its idle replicas to stop.
        unpin: the count set by hand has lapsed (the function scaled to zero).
    """

    start: int = 0
    stop: tuple[int, ...] = ()
    unpin: bool = False


@dataclass
class _Work:
    view: FunctionView
    desired: int
    stop: list[int] = field(default_factory=list)
    start: int = 0


def zero_due(view: FunctionView, now: float) -> bool:
    """Whether ``view`` may scale to zero: ``.zero`` is set and it has been idle for zero-duration."""
    idle = view.inflight == 0 and view.waiting == 0
    return view.rule.zero and idle and now - view.last_active >= view.rule.zero_duration


def floor(view: FunctionView, now: float) -> int:
    """Fewest replicas ``view`` keeps now (see the module docstring)."""
    if zero_due(view, now):
        return 0
    if view.pinned is not None:  # set by hand: it overrides min, as scaling a deployment does
        return min(view.pinned, view.rule.max)
    keep_last = min(len(view.replicas), 1)
    return min(max(view.rule.min, keep_last), view.rule.max)


def wanted(view: FunctionView) -> int:
    """Replicas that serve the current demand at ``target`` calls each."""
    return math.ceil((view.inflight + view.waiting) / view.rule.target)


def desired(view: FunctionView, now: float) -> int:
    """The function's replica count before the machine-wide cap: demand within its floor and max."""
    return min(max(wanted(view), floor(view, now)), view.rule.max)


def idle_replicas(replicas: Sequence[ReplicaView], now: float, min_idle: float) -> list[int]:
    """Ids of ready replicas idle for at least ``min_idle`` seconds, longest idle first (newest on ties)."""
    idle = [
        r
        for r in replicas
        if r.ready and r.inflight == 0 and r.idle_since is not None and now - r.idle_since >= min_idle
    ]
    idle.sort(key=lambda r: (r.idle_since, -r.id))
    return [r.id for r in idle]


def choose_replica(replicas: Sequence[ReplicaView], target: int) -> int | None:
    """The ready replica a call goes to, or None when every ready one already has ``target`` calls.

    Packs calls onto the busiest replica with room (the oldest on ties), so the surplus replicas stay idle
    and the scale-down delay can remove them; spreading would keep every replica busy now and then.
    """
    best: ReplicaView | None = None
    for r in replicas:
        if (
            r.ready
            and r.inflight < target
            and (best is None or (r.inflight, -r.id) > (best.inflight, -best.id))
        ):
            best = r
    return None if best is None else best.id


def plan(
    views: Sequence[FunctionView], now: float, cap: int, scale_down_after: float, draining: int = 0
) -> dict[str, Decision]:
    """What to start and stop, per function, so each tends to its desired count within the cap.

    Args:
        views: every function.
        now: the time the views were taken.
        cap: most replicas on the machine, over all functions (draining ones included).
        scale_down_after: seconds a replica above the desired count must be idle before it is stopped.
        draining: replicas being stopped that still hold a process.

    Returns:
        A decision for every function.
    """
    work = [_Work(v, desired(v, now)) for v in views]
    for w in work:
        surplus = len(w.view.replicas) - w.desired
        if surplus > 0:
            # Going to zero by zero-duration, the function has been idle at least that long: no extra wait.
            delay = scale_down_after if w.desired else min(scale_down_after, w.view.rule.zero_duration)
            w.stop = idle_replicas(w.view.replicas, now, delay)[:surplus]
    total = sum(len(v.replicas) for v in views) + draining - sum(len(w.stop) for w in work)
    headroom = max(cap - total, 0)
    # The most waiting calls first; names break ties so the plan is the same for the same views.
    for w in sorted(work, key=lambda w: (-w.view.waiting, w.view.name)):
        need = 0 if w.view.start_blocked else w.desired - len(w.view.replicas)
        if need <= 0:
            continue
        w.start = min(need, headroom)
        headroom -= w.start
        if w.start < need and w.view.waiting > 0:
            w.start += _reclaim(work, w, need - w.start, now)
    return {
        w.view.name: Decision(
            w.start, tuple(w.stop), unpin=w.view.pinned is not None and zero_due(w.view, now)
        )
        for w in work
    }


def _reclaim(work: list[_Work], needy: _Work, count: int, now: float) -> int:
    """Stop up to ``count`` idle replicas of functions with no waiting calls, for ``needy``; how many."""
    candidates: list[tuple[float, int, _Work]] = []
    for w in work:
        if w is needy or w.view.waiting > 0:
            continue
        for r in w.view.replicas:
            if r.ready and r.inflight == 0 and r.idle_since is not None and r.id not in w.stop:
                candidates.append((r.idle_since, r.id, w))
    candidates.sort(key=lambda c: (c[0], -c[1]))
    for _, rid, w in candidates[:count]:
        w.stop.append(rid)
    return min(count, len(candidates))
