"""The OpenFaaS gateway contract over real HTTP: the same iteration DAG runs against a gateway URL."""

from __future__ import annotations

import json
import urllib.request

import pytest

from ftg_common import runtime
from tests.funcs import new_run
from workflows.gateway.server import serve
from workflows.iteration import iteration_manifest


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
    from workflows.engines.local import LocalEngine, compile_workflow

    cfg = new_run(n_envs=4, n_steps=16, shards=2, batch_size=32, n_epochs=1, total_steps=64 * 4)
    engine = LocalEngine(RoutingInvoker(local=InProcessInvoker(), http=HttpInvoker()))
    compiled = compile_workflow(iteration_manifest())
    params = {"run-id": cfg.run_id, "iteration": "0", "iterations": "4", "eval-every": "1", "gateway": gateway,
              "shards": "[0, 1]", "config-digest": cfg.digest(), "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    run = engine.run(compiled, params)
    assert run.phase == "Succeeded", run.message
    assert json.loads(run.outputs("update"))["version"] == 1
    assert runtime.meta().get_run(cfg.run_id)["version"] == 1
    code, text = _get(f"{gateway}/metrics")
    assert code == 200
    assert 'gateway_function_invocation_total{code="200",function_name="rollout-collector"} 2.0' in text
    assert 'gateway_function_invocation_total{code="200",function_name="policy-evaluator"} 1.0' in text
    assert "gateway_functions_seconds_bucket" in text and "gateway_service_count" in text
    code, text = _get(f"{gateway}/system/functions")
    counts = {f["name"]: f["invocationCount"] for f in json.loads(text)}
    assert counts == {"rollout-collector": 2, "reward-aggregator": 1, "policy-updater": 1, "policy-evaluator": 1}


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
