"""The OpenFaaS gateway contract over real HTTP: the same iteration DAG runs against a gateway URL."""

from __future__ import annotations

import json
import urllib.request

import pytest

from ftg_common import runtime
from ftg_common.schemas import UpdateResult
from tests.funcs import new_run
from workflows.gateway.server import serve


@pytest.fixture
def gateway(ftg_env):
    server = serve("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def test_iteration_dag_over_http_gateway(gateway: str) -> None:
    from workflows.engines.invokers import HttpInvoker, InProcessInvoker, RoutingInvoker
    from workflows.engines.local import LocalEngine

    cfg = new_run(n_envs=4, n_steps=16, shards=2, batch_size=32, n_epochs=1, total_steps=64 * 4)
    engine = LocalEngine(RoutingInvoker(local=InProcessInvoker(), http=HttpInvoker()), gateway=gateway)
    params = {
        "run-id": cfg.run_id,
        "iteration": "0",
        "iterations": "4",
        "eval-every": "1",
        "gateway": gateway,
        "shards": "[0, 1]",
        "config-digest": cfg.digest(),
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }
    run = engine.run(params)
    engine.close()
    assert run.phase == "Succeeded", run.message
    assert run.result("update", UpdateResult).version == 1
    assert runtime.meta().get_run(cfg.run_id)["version"] == 1
    code, text = _get(f"{gateway}/metrics")
    assert code == 200
    assert 'gateway_function_invocation_total{code="200",function_name="rollout-collector"} 2.0' in text
    assert 'gateway_function_invocation_total{code="200",function_name="policy-evaluator"} 1.0' in text
    assert "gateway_functions_seconds_bucket" in text and "gateway_service_count" in text
    code, text = _get(f"{gateway}/system/functions")
    counts = {f["name"]: f["invocationCount"] for f in json.loads(text)}
    assert counts == {
        "rollout-collector": 2,
        "reward-aggregator": 1,
        "policy-updater": 1,
        "policy-evaluator": 1,
    }


def test_gateway_errors_are_json(gateway: str) -> None:
    req = urllib.request.Request(f"{gateway}/function/rollout-collector", data=b"{oops", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400 and "not valid JSON" in json.loads(err.value.read())["error"]
    req = urllib.request.Request(f"{gateway}/function/no-such-fn", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 404
    assert _get(f"{gateway}/healthz") == (200, "OK")


def test_container_entry_point_serves_one_handler(ftg_env, monkeypatch) -> None:
    """functions/serve.py is what runs behind the of-watchdog in each function image (WSGI)."""
    import io
    from wsgiref.util import setup_testing_defaults

    from ftg_common.settings import get_settings
    from functions import serve as entry

    def call(body: bytes) -> tuple[str, dict, bytes]:
        environ: dict = {
            "REQUEST_METHOD": "POST",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
        setup_testing_defaults(environ)
        seen: dict = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            seen.update(status=status, headers=dict(headers))

        out = b"".join(entry.app(environ, start_response))
        return seen["status"], seen["headers"], out

    monkeypatch.setenv("FTG_FUNCTION", "rollout_collector")
    get_settings.cache_clear()
    entry._handler.cache_clear()
    status, headers, out = call(b"{broken")
    assert status.startswith("400") and headers["Content-Length"] == str(len(out))
    assert "not valid JSON" in json.loads(out)["error"]

    monkeypatch.setenv("FTG_FUNCTION", "../secrets")
    get_settings.cache_clear()
    entry._handler.cache_clear()
    with pytest.raises(SystemExit, match="FTG_FUNCTION"):
        call(b"{}")
    entry._handler.cache_clear()
