"""Runs the FaaSTrainGym CLI unchanged and records when its phases start and end.

    python benchmarks/cli_timeline.py EVENTS_FILE ROOT -- submit --only zoo --seeds 0

ROOT is the checkout whose ``workflows/ppo_sweep.py`` runs (so a snapshot of another revision can be
measured with the same tool). Each event is one line ``<name> <start|end> <epoch seconds> <thread id>``
written with a single ``os.write`` as it happens, so the record survives however the process exits
(``os._exit``, a signal) and costs microseconds per event. Only the main process records: spawned
workers re-run this file as ``__mp_main__`` and must find nothing to do.

The probes are attached right after their module is first imported (an import hook), so the CLI imports
exactly what it would without them, in the same order, on the same threads.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

# (module, attribute path, event name). A probe whose target does not exist is skipped, so the tool
# keeps working while those modules change shape.
PROBES: tuple[tuple[str, str, str], ...] = (
    ("workflows.sweep", "open_services", "open_services"),
    ("workflows.tracking", "Tracker.__init__", "tracker_init"),
    ("workflows.engines.invokers", "PoolInvoker.warmup", "pool_warmup"),
    ("workflows.engines.local", "compile_workflow", "compile_dag"),
    ("workflows.iteration", "iteration_manifest", "build_dag"),
    ("workflows.sweep", "submit", "submit"),
    ("workflows.sweep", "run_trials", "run_trials"),
    ("workflows.sweep", "finalize", "finalize"),
    ("workflows.sweep", "Services.close", "close"),
    ("workflows.tracking", "Tracker.end_run", "end_run"),
    ("workflows.tracking", "Tracker.close", "tracker_close"),
    ("workflows.engines.invokers", "PoolInvoker.close", "pool_close"),
    ("workflows.models", "log_policy_model", "log_model"),
    ("workflows.models", "set_champion", "set_champion"),
    ("workflows.driver", "RunDriver.prepare", "prepare"),
    ("workflows.engines.local", "LocalEngine.run", "iteration"),
    ("workflows.engines.argo", "ArgoEngine.run", "iteration"),
)


class _Recorder:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)

    def event(self, name: str, kind: str) -> None:
        os.write(self.fd, f"{name} {kind} {time.time():.6f} {threading.get_ident()}\n".encode())

    def wrap(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        def probe(*args: Any, **kwargs: Any) -> Any:
            self.event(name, "start")
            try:
                return fn(*args, **kwargs)
            finally:
                self.event(name, "end")

        probe.__wrapped__ = fn  # type: ignore[attr-defined]
        probe.__name__ = getattr(fn, "__name__", name)
        probe.__qualname__ = getattr(fn, "__qualname__", name)
        return probe

    def attach(self, module: ModuleType) -> None:
        for mod_name, attr, name in PROBES:
            if mod_name != module.__name__:
                continue
            owner: Any = module
            *path, leaf = attr.split(".")
            try:
                for part in path:
                    owner = getattr(owner, part)
                target = getattr(owner, leaf)
            except AttributeError:
                self.event(f"missing:{mod_name}:{attr}", "start")
                continue
            setattr(owner, leaf, self.wrap(target, name))


class _ProbeFinder(importlib.abc.MetaPathFinder):
    """Lets the normal finders locate a probed module, then attaches the probes once it has executed."""

    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder
        self.pending = {mod for mod, _, _ in PROBES}

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader, recorder = spec.loader, self.recorder
        exec_module = loader.exec_module

        def exec_and_attach(module: ModuleType) -> None:
            exec_module(module)
            recorder.attach(module)

        loader.exec_module = exec_and_attach  # type: ignore[method-assign]
        return spec


def main() -> None:
    events, root, *rest = sys.argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    recorder = _Recorder(events)
    recorder.event("process", "start")
    # Registered first, so it runs after every other exit handler, on a normal exit or an os._exit that
    # runs the handlers first: what remains after it is the interpreter's own teardown.
    atexit.register(recorder.event, "exit_handlers", "end")
    sys.meta_path.insert(0, _ProbeFinder(recorder))
    cli = os.path.join(os.path.abspath(root), "workflows", "ppo_sweep.py")
    sys.argv = [cli, *rest]
    import runpy

    runpy.run_path(cli, run_name="__main__")


if __name__ == "__main__":
    main()
