"""Shared pytest fixtures.

Grouped by what they provide:
  * real servers: ``s3_endpoint`` (moto in server mode, one per session) and ``redis_url`` (an existing
    Redis; its absence is a failure, never a skip, because CI always provides one);
  * backends on those servers, fresh and isolated per test: ``file_store``, ``s3_store``,
    ``sqlite_meta``, ``redis_meta``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftg_common.meta.redis import RedisMeta
from ftg_common.meta.sqlite import SqliteMeta
from ftg_common.store.file import FileStore
from ftg_common.store.s3 import S3Store

# --------------------------------------------------------------------------- real S3 server (moto)

_MOTO_START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_http(url: str) -> bool:
    # No proxies: a proxy from the environment must not intercept a loopback health check.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a real S3-protocol server (moto server mode) running as a subprocess."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # moto logs every request; a file (not a pipe nobody reads) can never fill up and stall it.
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log, pytest.MonkeyPatch.context() as env:
        # moto accepts any credentials, but boto3 refuses to sign without some.
        env.setenv("AWS_ACCESS_KEY_ID", "ftg-test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "ftg-test")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        env.setenv("NO_PROXY", ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"])))
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + _MOTO_START_TIMEOUT_S
            while not _answers_http(endpoint):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"moto S3 server did not start on {endpoint}:\n{log_path.read_text(errors='replace')}",
                        pytrace=False,
                    )
                time.sleep(0.1)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- real Redis server

REDIS_URL_ENV = "FTG_TEST_REDIS_URL"
_DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis (``FTG_TEST_REDIS_URL`` or 127.0.0.1:6379); fails the test if there is none."""
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
def sqlite_meta(tmp_path: Path) -> Iterator[SqliteMeta]:
    meta = SqliteMeta(tmp_path / "meta.db")
    yield meta
    meta.close()


@pytest.fixture
def redis_key_prefix() -> str:
    return f"ftg-test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def redis_meta(redis_url: str, redis_key_prefix: str) -> Iterator[RedisMeta]:
    """A RedisMeta under a key prefix no other test uses; its keys are deleted afterwards."""
    import redis

    meta = RedisMeta(redis_url, prefix=redis_key_prefix)
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


def _clear_process_caches() -> None:
    from ftg_common import runtime
    from ftg_common.settings import get_settings

    get_settings.cache_clear()
    runtime.store.cache_clear()
    runtime.meta.cache_clear()
    runtime._cached_config.cache_clear()


@pytest.fixture
def ftg_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the settings (and so every handler in this process) at a fresh file store + SQLite meta."""
    monkeypatch.setenv("FTG_STORE_URL", f"file://{tmp_path}/store")
    monkeypatch.setenv("FTG_META_URL", f"sqlite:///{tmp_path}/meta.db")
    monkeypatch.setenv("FTG_LOCAL_WORKERS", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    _clear_process_caches()
    yield tmp_path
    _clear_process_caches()
