"""Where the driver runs decides the addresses it uses (workflows/placement.py).

The Workflow's steps run inside the cluster, so the ``gateway`` parameter of every submitted Workflow is the
in-cluster gateway, never the driver's own (port-forwarded) address; the driver's direct calls go to its own.
``submit --in-cluster`` takes the Argo token and CA from the pod's service account. The Argo server is the
stand-in (tests/argo_fake.py), served over TLS where certificates are under test; the cluster's DNS is
:class:`ClusterNetwork`, which answers only the OpenFaaS Service name.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import ipaddress
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client.parser import text_string_to_metric_families

from ftg_common import runtime
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.faas import Response
from ftg_common.settings import Settings
from tests.argo_fake import FakeArgo
from workflows import ppo_sweep
from workflows.driver import RunDriver
from workflows.engines.invokers import InProcessInvoker, InvocationError, RoutingInvoker
from workflows.gateway.server import serve
from workflows.placement import (
    IN_CLUSTER_ARGO,
    IN_CLUSTER_GATEWAY,
    PlacementError,
    argo_verify,
    check_embedded,
    driver_gateway,
    in_cluster,
    workflow_gateway,
)
from workflows.sweep import open_services

TOKEN = "pod-token"


# The OpenFaaS gateway Service, by its short and its full in-cluster name.
CLUSTER_NAMES = {"gateway.openfaas:8080", "gateway.openfaas.svc.cluster.local:8080"}


class ClusterNetwork:
    """The network as the Argo agent sees it: the OpenFaaS Service's names reach the functions (run in this
    process); no other address is the gateway from inside the cluster, a loopback one least of all."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self._functions = InProcessInvoker()

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        self.urls.append(url)
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.netloc in CLUSTER_NAMES:
            return self._functions.submit(f"local://gateway{parts.path}", method, headers, body, timeout)
        future: cf.Future[Response] = cf.Future()
        future.set_exception(InvocationError(f"{parts.netloc} is not the gateway inside the cluster"))
        return future


@pytest.fixture
def cluster(ftg_env: Path) -> Iterator[tuple[FakeArgo, ClusterNetwork, str]]:
    """The Argo stand-in whose steps see :class:`ClusterNetwork`, and a real gateway for the driver."""
    argo = FakeArgo(TOKEN)
    argo.invoker.close()
    network = ClusterNetwork()
    argo.invoker = RoutingInvoker(local=InProcessInvoker(), http=network)
    gateway = serve("127.0.0.1", 0)
    yield argo, network, f"http://127.0.0.1:{gateway.server_address[1]}"
    gateway.shutdown()
    argo.close()


def _tiny_run(run_id: str) -> RunConfig:
    ppo = PPOConfig(
        n_envs=2, n_steps=16, shards=2, batch_size=32, n_epochs=1, total_steps=64, eval_episodes=1
    )
    return RunConfig(run_id=run_id, seed=0, ppo=ppo)


def _submitted_gateways(argo: FakeArgo) -> list[str]:
    """The ``gateway`` argument of every Workflow the stand-in received."""
    out = []
    for r in argo.requests:
        if r["method"] == "POST" and r["path"].startswith("/api/v1/workflows/"):
            params = r["body"]["workflow"]["spec"]["arguments"]["parameters"]
            out.append(next(p["value"] for p in params if p["name"] == "gateway"))
    return out


def _invocations(gateway_url: str) -> dict[str, float]:
    """Calls the gateway served, per function (its Prometheus counter)."""
    with urllib.request.urlopen(f"{gateway_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gateway_function_invocation_total":
                name = sample.labels["function_name"]
                counts[name] = counts.get(name, 0.0) + sample.value
    return counts


# --------------------------------------------------------------------------- the Workflow's gateway


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (None, IN_CLUSTER_GATEWAY),
        ("http://gateway.openfaas.svc.cluster.local:8080/", "http://gateway.openfaas.svc.cluster.local:8080"),
    ],
)
def test_off_cluster_driver_passes_the_in_cluster_gateway_to_every_workflow(
    cluster, setting: str | None, expected: str
) -> None:
    argo, network, local_gateway = cluster
    # What a user on a laptop sets: Argo and the gateway through port-forwards.
    settings = Settings(
        engine="argo",
        argo_host=argo.url,
        argo_token=TOKEN,
        argo_namespace="ftg",
        argo_poll_seconds=0.01,
        gateway_url=local_gateway,
        workflow_gateway_url=setting,
    )
    services = open_services(settings, tracking=False, warm=False)
    try:
        summary = RunDriver(
            _tiny_run("placed-run"), engine=services.engine, store=services.store, meta=services.meta
        ).drive()
    finally:
        services.close()
    assert summary.steps == 64
    assert _submitted_gateways(argo) == [expected, expected]
    # Every step reached the functions through the in-cluster name, none through the driver's address.
    assert network.urls and all(u.startswith(f"{expected}/function/") for u in network.urls)
    # The driver's only direct call (policy version 0) went to its own gateway, and no step did.
    assert _invocations(local_gateway) == {"policy-updater": 1.0}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://localhost:31112",
        "http://[::1]:8080",
        "http://0.0.0.0:8080",
        "gateway.openfaas:8080",
        "local",
    ],
)
def test_a_workflow_gateway_no_step_can_reach_is_refused_naming_the_setting(url: str) -> None:
    settings = Settings(engine="argo", gateway_url="http://127.0.0.1:8080", workflow_gateway_url=url)
    with pytest.raises(PlacementError, match="FTG_WORKFLOW_GATEWAY_URL"):
        workflow_gateway(settings)


def test_argo_engine_refuses_before_submitting_anything(ftg_env: Path) -> None:
    settings = Settings(
        engine="argo",
        argo_host="http://127.0.0.1:9",
        gateway_url="http://127.0.0.1:8080",
        workflow_gateway_url="http://127.0.0.1:8080",
    )
    with pytest.raises(SystemExit, match="FTG_WORKFLOW_GATEWAY_URL: 'http://127.0.0.1:8080' is a loopback"):
        open_services(settings, tracking=False, warm=False)


def test_driver_gateway_must_be_reachable_by_http() -> None:
    with pytest.raises(PlacementError, match="FTG_GATEWAY_URL: 'local'"):
        driver_gateway(Settings(engine="argo", gateway_url="local"))
    assert driver_gateway(Settings(engine="argo", gateway_url="http://127.0.0.1:8080/")) == (
        "http://127.0.0.1:8080"
    )


def test_the_embedded_engine_takes_no_separate_workflow_gateway() -> None:
    # It runs the steps in this process: one address serves both.
    check_embedded(
        Settings(gateway_url="http://127.0.0.1:8080", workflow_gateway_url="http://127.0.0.1:8080/")
    )
    check_embedded(Settings(gateway_url="local"))
    with pytest.raises(PlacementError, match="FTG_WORKFLOW_GATEWAY_URL: .* applies to FTG_ENGINE=argo only"):
        check_embedded(Settings(gateway_url="local", workflow_gateway_url=IN_CLUSTER_GATEWAY))


# --------------------------------------------------------------------------- Argo server TLS


def _certificate(subject: str, public_key: Any, issuer: x509.Name | None = None) -> x509.CertificateBuilder:
    """A day-long certificate for ``subject`` (self-issued when ``issuer`` is None), before extensions."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _certificate_authority(tmp: Path, name: str) -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA: (its PEM path, certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
    )
    cert = (
        _certificate(name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def _serve_tls(
    argo: FakeArgo, tmp: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> str:
    """Put the stand-in behind TLS with a certificate for 127.0.0.1 issued by the CA; its https URL."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _certificate("argo-server", key.public_key(), ca_cert.subject)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "server.pem", tmp / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.write_bytes(private)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    # The listening socket keeps its descriptor, so the running server accepts TLS from now on.
    argo.server.socket = context.wrap_socket(argo.server.socket, server_side=True)
    return argo.url.replace("http://", "https://")


@pytest.fixture
def tls_cluster(cluster, tmp_path: Path) -> tuple[FakeArgo, str, str, Path]:
    """The stand-in over TLS: (server, its https URL, the driver's gateway URL, the issuing CA's PEM)."""
    argo, _, local_gateway = cluster
    ca_path, ca_cert, ca_key = _certificate_authority(tmp_path, "ftg-test-ca")
    return argo, _serve_tls(argo, tmp_path, ca_cert, ca_key), local_gateway, ca_path


def _argo_settings(url: str, gateway: str, **extra: Any) -> Settings:
    return Settings(
        engine="argo", argo_host=url, argo_token=TOKEN, argo_namespace="ftg", gateway_url=gateway, **extra
    )


def test_argo_server_is_verified_against_the_ca_bundle(tls_cluster) -> None:
    argo, url, gateway, ca = tls_cluster
    services = open_services(_argo_settings(url, gateway, argo_ca_bundle=str(ca)), tracking=False, warm=False)
    services.close()
    assert "ftg-iteration" in argo.templates  # installed over the verified connection


# pytest.warns re-emits the other warnings it saw, out of reach of pyproject's filter for Hera's own.
@pytest.mark.filterwarnings("ignore:The `json` method is deprecated:DeprecationWarning")
def test_argo_server_with_an_unknown_ca_is_refused(tls_cluster, tmp_path: Path) -> None:
    argo, url, gateway, _ = tls_cluster
    other, _, _ = _certificate_authority(tmp_path, "someone-else")
    for extra in ({}, {"argo_ca_bundle": str(other)}):  # the system's CAs, then another CA
        with pytest.raises(requests.exceptions.SSLError):
            open_services(_argo_settings(url, gateway, **extra), tracking=False, warm=False)
    assert argo.templates == {}
    # Unverified on request only, and then requests says so.
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        services = open_services(
            _argo_settings(url, gateway, argo_verify_ssl=False), tracking=False, warm=False
        )
    services.close()
    assert "ftg-iteration" in argo.templates


def test_ca_bundle_settings_are_checked_naming_the_setting(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    with pytest.raises(PlacementError, match="FTG_ARGO_CA_BUNDLE: no such file"):
        argo_verify(Settings(argo_ca_bundle=str(bundle)))
    bundle.write_text("pem")
    assert argo_verify(Settings(argo_ca_bundle=str(bundle))) == str(bundle)
    with pytest.raises(PlacementError, match="FTG_ARGO_CA_BUNDLE: .* FTG_ARGO_VERIFY_SSL is false"):
        argo_verify(Settings(argo_ca_bundle=str(bundle), argo_verify_ssl=False))
    assert argo_verify(Settings()) is True
    assert argo_verify(Settings(argo_verify_ssl=False)) is False


# --------------------------------------------------------------------------- submit --in-cluster


def _service_account(tmp: Path, token: str = TOKEN, ca: Path | None = None) -> Path:
    account = tmp / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(f"{token}\n")
    (account / "ca.crt").write_bytes(ca.read_bytes() if ca else b"pem")
    (account / "namespace").write_text("ftg")
    return account


def test_in_cluster_takes_the_pods_identity_and_the_in_cluster_services(tmp_path: Path) -> None:
    account = _service_account(tmp_path)
    settings = in_cluster(Settings(service_account_dir=str(account)))
    assert settings.engine == "argo"
    assert settings.argo_host == IN_CLUSTER_ARGO
    assert settings.argo_token == TOKEN  # the trailing newline of the mounted file is not part of it
    assert settings.argo_ca_bundle == str(account / "ca.crt")
    assert settings.gateway_url == IN_CLUSTER_GATEWAY
    assert workflow_gateway(settings) == IN_CLUSTER_GATEWAY


def test_in_cluster_keeps_what_is_set_explicitly(tmp_path: Path) -> None:
    account = _service_account(tmp_path)
    bundle = tmp_path / "argo-ca.pem"
    bundle.write_text("pem")
    explicit = Settings(
        service_account_dir=str(account),
        argo_host="https://argo.example:2746",
        argo_token="dedicated",
        argo_ca_bundle=str(bundle),
        gateway_url="http://gateway.openfaas:8080",
        workflow_gateway_url="http://gateway.openfaas.svc.cluster.local:8080",
    )
    settings = in_cluster(explicit)
    assert (settings.argo_host, settings.argo_token, settings.argo_ca_bundle) == (
        "https://argo.example:2746",
        "dedicated",
        str(bundle),
    )
    assert settings.gateway_url == "http://gateway.openfaas:8080"
    # Unset, the driver's own gateway is the one the Workflow gets.
    settings = in_cluster(explicit.model_copy(update={"gateway_url": "local"}))
    assert settings.gateway_url == "http://gateway.openfaas.svc.cluster.local:8080"


def test_in_cluster_without_verification_needs_no_ca(tmp_path: Path) -> None:
    account = _service_account(tmp_path)
    (account / "ca.crt").unlink()
    settings = in_cluster(Settings(service_account_dir=str(account), argo_verify_ssl=False))
    assert settings.argo_ca_bundle is None and argo_verify(settings) is False
    with pytest.raises(PlacementError, match=r"ca\.crt .*FTG_SERVICE_ACCOUNT_DIR"):
        in_cluster(Settings(service_account_dir=str(account)))


def test_in_cluster_outside_a_pod_names_the_missing_token(tmp_path: Path) -> None:
    with pytest.raises(
        PlacementError, match=r"service account's token .*nowhere/token.*FTG_SERVICE_ACCOUNT_DIR"
    ):
        in_cluster(Settings(service_account_dir=str(tmp_path / "nowhere")))


def test_submit_in_cluster_runs_a_sweep_as_the_pods_service_account(
    tls_cluster, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The CLI path a driver pod takes: token and CA from the mounted service account, Argo over TLS."""
    from benchmarks.reliability import procs

    argo, url, gateway, ca = tls_cluster
    account = _service_account(tmp_path, ca=ca)
    sweep = {
        "name": "in-pod",
        "seeds": [0],
        "max_parallel": 1,
        "defaults": {"env_id": "CartPole-v1", "total_steps": 64, "eval_episodes": 1},
        "configs": {"tiny": {"n_envs": 2, "n_steps": 16, "shards": 2, "batch_size": 32, "n_epochs": 1}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    monkeypatch.setenv("FTG_SERVICE_ACCOUNT_DIR", str(account))
    monkeypatch.setenv("FTG_ARGO_HOST", url)  # the stand-in instead of argo-server.argo:2746
    monkeypatch.setenv("FTG_ARGO_NAMESPACE", "ftg")
    monkeypatch.setenv("FTG_ARGO_POLL_SECONDS", "0.01")
    monkeypatch.setenv("FTG_GATEWAY_URL", gateway)  # the driver's calls: no cluster DNS here
    for name in ("FTG_ARGO_TOKEN", "FTG_ARGO_CA_BUNDLE", "FTG_WORKFLOW_GATEWAY_URL", "FTG_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    procs.clear_settings_caches()
    args = ppo_sweep.build_parser().parse_args(
        ["submit", "--in-cluster", "--no-tracking", "--config", str(path)]
    )
    assert args.func(args) == 0, capsys.readouterr().err
    assert {r["authorization"] for r in argo.requests} == {f"Bearer {TOKEN}"}
    assert _submitted_gateways(argo) == [IN_CLUSTER_GATEWAY, IN_CLUSTER_GATEWAY]
    [run] = runtime.meta().list_runs(runtime.meta().list_sweeps()[0]["sweep_id"])
    assert run["status"] == "finished"


def test_submit_in_cluster_outside_a_pod_fails_naming_the_setting(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from benchmarks.reliability import procs

    monkeypatch.setenv("FTG_SERVICE_ACCOUNT_DIR", str(tmp_path / "none"))
    procs.clear_settings_caches()
    args = ppo_sweep.build_parser().parse_args(["submit", "--in-cluster", "--no-tracking"])
    try:
        assert args.func(args) == 2
    finally:
        procs.clear_settings_caches()
    assert "FTG_SERVICE_ACCOUNT_DIR" in capsys.readouterr().err


def test_in_cluster_metrics_are_served_where_prometheus_scrapes_the_pod() -> None:
    from types import SimpleNamespace

    for in_pod, address in ((False, "127.0.0.1"), (True, "0.0.0.0")):
        services = SimpleNamespace(observers=[])
        ppo_sweep._serve_metrics(services, 0, in_cluster=in_pod)
        [metrics] = services.observers
        try:
            assert metrics._server.server_address[0] == address
        finally:
            metrics.close()
