"""Each function image's entry point, run as the of-watchdog runs it: over HTTP, python3-http contract.

In http mode the watchdog starts the image's ``fprocess`` and forwards each call to ``upstream_url``.
Here each function's process is assembled from the files that build its image, so a change to them
changes what runs:

* the code: only what ``functions/Dockerfile`` COPYs, copied into a fresh folder (the image's WORKDIR),
  run by an interpreter that has the project's dependencies but not its editable install, so the
  process cannot import anything the image would not hold;
* the environment: the Dockerfile's ENV for the function's ``FUNCTION`` build argument
  (``functions/stack.yml``), then the stack's environment, as OpenFaaS layers them; a file store and
  SQLite metadata under a temporary folder stand in for MinIO and Redis;
* the command: the ENV's ``fprocess``, plus ``--port`` with a free port (5000 may be taken on a
  shared machine; the Dockerfile's ``upstream_url`` is checked to name 5000, the port ``functions.serve``
  binds when given none).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks.reliability.procs import free_port, stop_process
from ftg_common import layout
from ftg_common.catalog import FUNCTIONS, FunctionSpec
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.meta import open_meta
from ftg_common.schemas import AggregateResult, CollectResult, EvalResult, UpdateResult
from ftg_common.store import open_store
from functions.serve import DEFAULT_PORT, HEALTH_PATH, READY_PREFIX
from tests import dockerfile

ROOT = Path(__file__).resolve().parents[2]
STACK = yaml.safe_load((ROOT / "functions" / "stack.yml").read_text())["functions"]
START_TIMEOUT_S = 120.0  # a cold start on a busy 2-core machine; a bound on a hang, not a speed check
PORT_ATTEMPTS = 3
RUN_ID = "image-entrypoint"
PPO = {"n_envs": 4, "n_steps": 8, "shards": 2, "batch_size": 16, "n_epochs": 1, "total_steps": 64}


# --------------------------------------------------------------------------- the image, from its build files


def _build_args(spec: FunctionSpec) -> dict[str, str]:
    return {str(k): str(v) for k, v in STACK[spec.name]["build_args"].items()}


@pytest.fixture(scope="module")
def image_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``bin`` folder whose ``python`` has the dependencies but not the project's editable install."""
    venv = tmp_path_factory.mktemp("image-python")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    # A plain path line adds the folder but runs none of its .pth files: the editable finder stays out.
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    return venv / "bin"


def _workdir(spec: FunctionSpec, base: Path) -> Path:
    """The image's WORKDIR for ``spec``: what its Dockerfile COPYs from the build context."""
    app = base / spec.folder
    for copy in dockerfile.context_copies(_build_args(spec)):
        source, dest = ROOT / copy.source, app / copy.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest)
    return app


def _environment(spec: FunctionSpec, bin_dir: Path, state: Path) -> dict[str, str]:
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/local/bin:/usr/bin:/bin", "HOME": str(state)}
    env.update(dockerfile.image_env(_build_args(spec)))
    env.update({str(k): str(v) for k, v in STACK[spec.name]["environment"].items()})
    env.update(FTG_STORE_URL=f"file://{state}/store", FTG_META_URL=f"sqlite:///{state}/meta.db")
    return env


def run_in_image(spec: FunctionSpec, bin_dir: Path, base: Path, code: str) -> str:
    """What ``code`` prints, run by the image's interpreter in ``spec``'s WORKDIR with its environment."""
    out = subprocess.run(
        [str(bin_dir / "python"), "-c", code],
        cwd=_workdir(spec, base),
        env=_environment(spec, bin_dir, base),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


# --------------------------------------------------------------------------- processes


@dataclass
class Replica:
    """One function's process and where it listens."""

    spec: FunctionSpec
    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _launch(spec: FunctionSpec, app: Path, env: dict[str, str]) -> Replica:
    port = free_port()
    command = [*shlex.split(env["fprocess"]), "--port", str(port)]
    proc = subprocess.Popen(
        command,
        cwd=app,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name=f"{spec.name}-output", daemon=True).start()
    return Replica(spec, proc, lines, port)


def _ready_line(replica: Replica) -> tuple[str | None, str]:
    """The readiness line, or None if the process ended first; and all it printed until then."""
    seen: list[str] = []
    while True:
        try:
            line = replica.lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            return None, "".join(seen) + f"\n(no readiness line within {START_TIMEOUT_S:g} s)"
        if line is None:
            return None, "".join(seen)
        if line.startswith(READY_PREFIX):
            return line.strip(), "".join(seen)
        seen.append(line)


def start(
    spec: FunctionSpec, bin_dir: Path, state: Path, **env_overrides: str
) -> tuple[Replica, str | None, str]:
    """Start ``spec``'s process; (it, its readiness line or None if it never got ready, what it printed).

    A process that never got ready is stopped. A port taken between choosing and binding it is retried.
    """
    app = state / "app"
    workdir = app / spec.folder if (app / spec.folder).exists() else _workdir(spec, app)
    env = {**_environment(spec, bin_dir, state), **env_overrides}
    for _ in range(PORT_ATTEMPTS):
        replica = _launch(spec, workdir, env)
        line, output = _ready_line(replica)
        if line is None:
            stop_process(replica.proc)
        if line is not None or "Address already in use" not in output:
            break
    return replica, line, output


@dataclass(frozen=True)
class State:
    """The stand-ins for MinIO and Redis (a file store and SQLite under ``path``) and the run's digest."""

    path: Path
    digest: str


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> State:
    """Fresh stores holding a run whose config is frozen."""
    path = tmp_path_factory.mktemp("image-state")
    cfg = RunConfig(run_id=RUN_ID, seed=0, ppo=PPOConfig.model_validate(PPO))
    open_store(f"file://{path}/store").put_json(layout.config_key(RUN_ID), cfg.to_stored())
    open_meta(f"sqlite:///{path}/meta.db").create_run(RUN_ID)
    return State(path, cfg.digest())


@pytest.fixture(scope="module")
def replicas(image_python: Path, state: State) -> Iterator[dict[str, Replica]]:
    """The four functions' processes, each ready."""
    started: dict[str, Replica] = {}
    try:
        for spec in FUNCTIONS:
            replica, line, output = start(spec, image_python, state.path)
            started[spec.name] = replica
            assert line == f"{READY_PREFIX}127.0.0.1:{replica.port}", f"{spec.name} did not start:\n{output}"
        yield started
    finally:
        for replica in started.values():
            stop_process(replica.proc)


def post(replica: Replica, body: bytes) -> tuple[int, str, Any]:
    """POST ``body`` to ``/`` as the watchdog forwards a call: (status, Content-Type, parsed JSON)."""
    req = urllib.request.Request(
        replica.url + "/", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=120) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], json.loads(err.read())


# --------------------------------------------------------------------------- tests


def test_the_watchdog_forwards_to_the_port_functions_serve_binds_by_default() -> None:
    for spec in FUNCTIONS:
        env = dockerfile.image_env(_build_args(spec))
        assert env["mode"] == "http"
        assert env["upstream_url"] == "http://127.0.0.1:5000"
        upstream = urlsplit(env["upstream_url"])
        assert (upstream.hostname, upstream.port) == ("127.0.0.1", DEFAULT_PORT)


def test_the_image_interpreter_imports_only_what_the_dockerfile_copies(
    image_python: Path, tmp_path: Path
) -> None:
    code = (
        "import importlib.util as u; print([bool(u.find_spec(m)) for m in ('functions.serve', 'workflows')])"
    )
    # The isolation the other tests rely on: the copied code is found, the rest of the repository is not.
    assert run_in_image(FUNCTIONS[0], image_python, tmp_path, code).strip() == "[True, False]"


def test_each_entry_point_serves_its_function_over_http(replicas: dict[str, Replica], state: State) -> None:
    """One iteration in the DAG's order, each call POSTed to its own function's process."""
    ref = {"run_id": RUN_ID, "iteration": 0, "config_digest": state.digest}

    def ok(function: str, body: dict[str, Any]) -> Any:
        status, content_type, answer = post(replicas[function], json.dumps(body).encode())
        assert (status, content_type) == (200, "application/json"), (function, answer)
        return answer

    ok("policy-updater", {**ref, "mode": "init"})
    shards = [CollectResult.model_validate(ok("rollout-collector", {**ref, "shard": s})) for s in (0, 1)]
    assert [s.shard for s in shards] == [0, 1]
    batch = AggregateResult.model_validate(
        ok("reward-aggregator", {**ref, "shards": [s.model_dump(mode="json") for s in shards]})
    )
    assert batch.steps == PPO["n_envs"] * PPO["n_steps"] == 32  # both shards' steps, read from the store
    update = UpdateResult.model_validate(
        ok("policy-updater", {**ref, "batch": batch.model_dump(mode="json")})
    )
    assert update.version == 1
    evaluation = EvalResult.model_validate(ok("policy-evaluator", {**ref, "episodes": 2}))
    assert (evaluation.version, evaluation.episodes) == (1, 2)
    # The processes wrote where the cluster's functions would: the shared metadata store saw the commit.
    assert open_meta(f"sqlite:///{state.path}/meta.db").get_run(RUN_ID)["version"] == 1


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_a_bad_body_is_a_400_with_a_json_error(replicas: dict[str, Replica], spec: FunctionSpec) -> None:
    replica = replicas[spec.name]
    status, content_type, answer = post(replica, b"{not json")
    assert (status, content_type) == (400, "application/json")
    assert "not valid JSON" in answer["error"]
    status, content_type, answer = post(replica, json.dumps({"run_id": "../etc", "iteration": 0}).encode())
    assert (status, content_type) == (400, "application/json")
    assert "run_id" in answer["error"]


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_the_health_path_answers_ok(replicas: dict[str, Replica], spec: FunctionSpec) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(replicas[spec.name].url + HEALTH_PATH, timeout=30) as resp:
        assert (resp.status, resp.read()) == (200, b"OK")


def test_an_image_built_for_no_known_function_exits_naming_the_setting(
    image_python: Path, tmp_path: Path
) -> None:
    replica, line, output = start(FUNCTIONS[0], image_python, tmp_path, FTG_FUNCTION="no_such_function")
    try:
        assert line is None and replica.proc.wait(timeout=60) != 0
        assert "FTG_FUNCTION must name a function" in output and "'no_such_function'" in output
    finally:
        stop_process(replica.proc)


def _closure(names: set[str]) -> set[str]:
    """``names`` and every distribution they require, transitively (extras left out), canonicalized."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_the_requirements_install_every_library_the_entry_point_imports(
    image_python: Path, spec: FunctionSpec, tmp_path: Path
) -> None:
    """A library the handler imports that its requirements.txt does not install stops the image at start."""
    code = (
        f"import functions.serve, {spec.module}, sys\n"
        "for m in list(sys.modules.values()): print(getattr(m, '__file__', None) or '')"
    )
    listing = run_in_image(spec, image_python, tmp_path, code)
    site_dirs = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    imported = {
        path.relative_to(site).parts[0].removesuffix(".py")
        for path in map(Path, filter(None, listing.splitlines()))
        for site in site_dirs
        if path.is_relative_to(site)
    }
    assert "numpy" in imported  # the listing really holds the dependencies
    providers = importlib.metadata.packages_distributions()
    lines = (ROOT / "functions" / spec.folder / "requirements.txt").read_text().splitlines()
    wanted = {Requirement(line).name for line in map(str.strip, lines) if line and line[0] not in "#-"}
    installed = _closure(wanted)
    missing = {
        top: providers.get(top, [])
        for top in sorted(imported)
        if not {canonicalize_name(d) for d in providers.get(top, [])} & installed
    }
    assert missing == {}
