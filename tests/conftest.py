"""Shared pytest fixtures and the ``integration`` marking.

Grouped by what they provide:
  * real servers: ``s3_endpoint`` (moto in server mode, one per session) and ``redis_url`` (an existing
    Redis; its absence is a failure, never a skip, because CI always provides one);
  * backends on those servers, fresh and isolated per test: ``file_store``, ``s3_store``,
    ``sqlite_meta``, ``redis_meta``; the metadata stores run on ``meta_clock``, a fake clock that
    moves only when the test advances it.

A test that needs a service (Redis, the S3 server, an HTTP server, the CLI in a subprocess) is marked
``integration`` here, at collection, from the fixtures it uses; ``make test-fast`` deselects those and
needs nothing running. A test that reaches a service fixture without the mark fails, so a new way of
requesting one can't slip into the fast subset unnoticed.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType

import pytest

from benchmarks.reliability import procs
from ftg_common.meta.redis import RedisMeta
from ftg_common.meta.sqlite import SqliteMeta
from ftg_common.store.file import FileStore
from ftg_common.store.s3 import S3Store
from tests.fake_clock import FakeClock

# --------------------------------------------------------------------------- the integration mark

# Fixtures that start or reach a service; any test whose fixture closure holds one is an integration test.
SERVICE_FIXTURES = frozenset(
    {
        "s3_endpoint",
        "s3_store",
        "redis_url",
        "redis_meta",
        "gateway",  # tests/integration/test_gateway.py: the OpenFaaS-compatible gateway over HTTP
        "cluster",  # tests/workflows/test_argo_engine.py: a fake Argo API server and the gateway
        "gateway_stub",  # tests/workflows/test_local_engine.py: an HTTP server answering like a gateway
    }
)
# Parametrized fixtures that pick a backend with request.getfixturevalue, which the collected fixture
# closure can't see: fixture name -> the parameter values that need a service.
SERVICE_PARAMS = {
    "store": frozenset({"s3"}),  # tests/integration/test_store.py
    "meta": frozenset({"redis"}),  # tests/integration/test_meta.py
}
# Tests that run the CLI in a subprocess with no fixture to say so, by module file and function name.
CLI_TESTS = {
    "test_config.py": frozenset(
        {"test_cli_rejects_a_bad_sweep_file_naming_the_field", "test_cli_status_and_compare_of_unknown_ids"}
    ),
    "test_resume.py": frozenset(
        {
            "test_killed_sweep_resumes_from_its_last_committed_iteration",
            "test_ctrl_c_interrupts_cleanly_and_names_the_resume_command",
        }
    ),
    "test_sweep_e2e.py": frozenset({"test_sweep_learns_cartpole_and_is_tracked"}),
}


# Every test in these folders is an integration test, whatever fixtures it uses.
INTEGRATION_DIRS = frozenset({"integration", "e2e"})


def _needs_a_service(item: pytest.Item) -> bool:
    if item.path.parent.name in INTEGRATION_DIRS:
        return True
    if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(params.get(name) in values for name, values in SERVICE_PARAMS.items()):
        return True
    function = getattr(item, "originalname", item.name)
    return function in CLI_TESTS.get(item.path.name, ())


def _check_cli_tests_exist(modules: set[ModuleType]) -> None:
    # A renamed test would silently drop out of CLI_TESTS and into the fast subset; refuse instead.
    for module in modules:
        missing = sorted(
            name for name in CLI_TESTS.get(Path(module.__file__ or "").name, ()) if not hasattr(module, name)
        )
        if missing:
            raise pytest.UsageError(
                f"tests/conftest.py CLI_TESTS names {missing} in {module.__name__}, which has no such test"
            )


@pytest.hookimpl(tryfirst=True)  # before -m selects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    modules: set[ModuleType] = set()
    for item in items:
        module = getattr(item, "module", None)
        if module is not None:
            modules.add(module)
        if _needs_a_service(item):
            item.add_marker(pytest.mark.integration)
    _check_cli_tests_exist(modules)


@pytest.fixture(autouse=True)
def _services_only_in_integration_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    # Checked after the test, when fixtures requested through getfixturevalue are known too.
    used = sorted(SERVICE_FIXTURES.intersection(request.fixturenames))
    if used and request.node.get_closest_marker("integration") is None:
        pytest.fail(
            f"{request.node.nodeid} used {used} but is not marked integration, so `make test-fast` would "
            "need services: mark it, or teach tests/conftest.py (SERVICE_PARAMS) how it reaches them",
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    # pytest-randomly prints its seed in the header, which -q hides; this line survives -q.
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and getattr(config.option, "randomly_reorganize", False):
        terminalreporter.write_line(
            f"test order: --randomly-seed={seed} (replay it with: pytest -p randomly --randomly-seed={seed})"
        )


# --------------------------------------------------------------------------- real S3 server (moto)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a real S3-protocol server (moto server mode) running as a subprocess."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with pytest.MonkeyPatch.context() as env, ExitStack() as stack:
        # moto accepts any credentials, but boto3 refuses to sign without some.
        env.setenv("AWS_ACCESS_KEY_ID", "ftg-test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "ftg-test")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        env.setenv("NO_PROXY", ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"])))
        try:
            endpoint = stack.enter_context(procs.moto_server(log_path))
        except procs.ServerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield endpoint


# --------------------------------------------------------------------------- real Redis server

REDIS_URL_ENV = "FTG_TEST_REDIS_URL"
_DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis (``FTG_TEST_REDIS_URL`` or 127.0.0.1:6379); fails the test if none is."""
    import redis

    url = os.environ.get(REDIS_URL_ENV, _DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        problem = None
    except redis.exceptions.RedisError as exc:
        problem = str(exc)
    finally:
        client.close()
    if problem is not None:
        pytest.fail(
            f"Redis is not reachable at {url} ({problem}). These tests need a real Redis server: start one "
            f"with `redis-server --daemonize yes` or `docker run -d -p 6379:6379 redis:7`, or set "
            f"{REDIS_URL_ENV} to point at one. CI starts it for you.",
            pytrace=False,
        )
    return url


# --------------------------------------------------------------------------- backends, fresh per test


@pytest.fixture
def file_store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3Store:
    """An S3Store on a bucket no other test uses."""
    return S3Store(f"ftg-test-{uuid.uuid4().hex[:16]}", endpoint_url=s3_endpoint, create_bucket=True)


@pytest.fixture
def meta_clock() -> FakeClock:
    """The clock of ``sqlite_meta`` and ``redis_meta``: tests move it instead of sleeping."""
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def sqlite_meta(tmp_path: Path, meta_clock: FakeClock) -> Iterator[SqliteMeta]:
    meta = SqliteMeta(tmp_path / "meta.db", clock=meta_clock)
    yield meta
    meta.close()


@pytest.fixture
def redis_key_prefix() -> str:
    return f"ftg-test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def redis_meta(redis_url: str, redis_key_prefix: str, meta_clock: FakeClock) -> Iterator[RedisMeta]:
    """A RedisMeta under a key prefix no other test uses; its keys are deleted afterwards."""
    import redis

    meta = RedisMeta(redis_url, prefix=redis_key_prefix, clock=meta_clock)
    yield meta
    meta.close()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{redis_key_prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --------------------------------------------------------------------------- the functions' environment


def _forget_mlflow_tracking_uri() -> None:
    # mlflow.set_tracking_uri() keeps a process-wide URI that outranks MLFLOW_TRACKING_URI, so after a
    # test that called it every later test would track into that test's database, depending on order.
    mlflow = sys.modules.get("mlflow")  # never imported just for this: it is slow to import
    if mlflow is None:
        return
    # Clearing the URI also unsets the variable; keep the environment as monkeypatch knows it.
    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(None)
    if env is not None:
        os.environ["MLFLOW_TRACKING_URI"] = env


@pytest.fixture
def ftg_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the settings (and so every handler in this process) at a fresh file store + SQLite meta,
    and MLflow at a fresh SQLite database."""
    _forget_mlflow_tracking_uri()
    monkeypatch.setenv("FTG_STORE_URL", f"file://{tmp_path}/store")
    monkeypatch.setenv("FTG_META_URL", f"sqlite:///{tmp_path}/meta.db")
    monkeypatch.setenv("FTG_LOCAL_WORKERS", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    procs.clear_settings_caches()
    yield tmp_path
    procs.clear_settings_caches()
    _forget_mlflow_tracking_uri()
