"""Child processes and this process's settings, as the reliability benchmarks and the tests use them.

* ports and servers: :func:`free_port`, :func:`answers_http`, :func:`stop_process` and
  :func:`moto_server` (an S3-protocol server as a child process);
* the settings: :func:`clear_settings_caches` drops what this process cached from the environment,
  :func:`environment` sets variables for a block and restores them (and the caches) after it, and
  :func:`scratch_stores_env` is a child's environment on stores of its own under one folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

MOTO_START_TIMEOUT_S = 30.0
# One thread per BLAS library: processes run side by side must not oversubscribe the CPUs.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class ServerStartError(RuntimeError):
    """A server started as a child process did not come up; the message includes its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now.

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers_http(url: str) -> bool:
    """Whether an HTTP server answers at ``url``, with any status.

    Args:
        url: What to request; proxies from the environment are bypassed (a loopback health check must
            not be intercepted).

    Returns:
        True if it answered, False if it could not be reached within a second.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up
    except OSError:
        return False
    return True


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Terminate ``proc`` and wait for it; kill it if it has not exited within ``timeout`` seconds.

    Args:
        proc: The child process.
        timeout: Seconds to wait after SIGTERM before SIGKILL.
    """
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def moto_server(log_path: Path, start_timeout: float = MOTO_START_TIMEOUT_S) -> Iterator[str]:
    """An S3-protocol server (``python -m moto.server``) as a child process, stopped after the block.

    It inherits this process's environment. Its output goes to a file (not a pipe nobody reads, which
    could fill up and stall it).

    Args:
        log_path: Where its output is written.
        start_timeout: Seconds it may take to answer.

    Yields:
        Its endpoint URL.

    Raises:
        ServerStartError: It exited or did not answer in time.
    """
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while not answers_http(endpoint):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerStartError(
                        f"moto S3 server did not start on {endpoint}:\n"
                        + log_path.read_text(errors="replace")
                    )
                time.sleep(0.1)
            yield endpoint
        finally:
            stop_process(proc)


def scratch_stores_env(d: Path, *, tracking: bool = True, workers: int | None = 2) -> dict[str, str]:
    """This process's environment for a child (a CLI, a gateway) on scratch stores under ``d``.

    Args:
        d: the folder: a file object store in ``d/store``, a SQLite metadata store ``d/meta.db``.
        tracking: also MLflow tracking into SQLite ``d/mlflow.db`` (else as this process has it).
        workers: warm local workers (``FTG_LOCAL_WORKERS``); None: as this process has it.
    """
    env = {**os.environ, "FTG_STORE_URL": f"file://{d}/store", "FTG_META_URL": f"sqlite:///{d}/meta.db"}
    if tracking:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{d}/mlflow.db"
    if workers is not None:
        env["FTG_LOCAL_WORKERS"] = str(workers)
    return env


def clear_settings_caches() -> None:
    """Drop the settings, store and metadata clients and run configs this process has cached."""
    # Imported here: the test suite imports this module before it sets up any environment.
    from ftg_common import runtime
    from ftg_common.settings import get_settings

    get_settings.cache_clear()
    runtime.store.cache_clear()
    runtime.meta.cache_clear()
    runtime._cached_config.cache_clear()


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables (and so the settings) for the block; restore them and the caches after.

    Args:
        values: Variable name -> value.

    Yields:
        Nothing; the settings follow ``values`` inside the block.
    """
    from ftg_common import runtime

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    clear_settings_caches()
    try:
        yield
    finally:
        with suppress(Exception):
            runtime.meta().close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        clear_settings_caches()
