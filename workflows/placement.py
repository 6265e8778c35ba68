"""Where the driver runs decides which addresses it uses: off the cluster, or in a pod (``--in-cluster``).

With ``FTG_ENGINE=argo`` two processes reach the OpenFaaS gateway: the driver (its own calls, such as
creating policy version 0) and the Argo agent running the Workflow's HTTP steps inside the cluster. An
off-cluster driver reaches the gateway through a port-forward or an ingress (``FTG_GATEWAY_URL``); the
steps reach it through the cluster's DNS (``FTG_WORKFLOW_GATEWAY_URL``, by default the OpenFaaS Service
``http://gateway.openfaas:8080``). The Workflow never gets the driver's URL: a loopback address there
would name the agent pod itself, so it is refused.

``submit --in-cluster`` runs the driver in a pod: the pod's service-account token authenticates to the
Argo server (``https://argo-server.argo:2746`` unless ``FTG_ARGO_HOST`` says otherwise), the
service account's ``ca.crt`` verifies its certificate unless ``FTG_ARGO_CA_BUNDLE`` names another CA,
and the driver's own calls go to the in-cluster gateway too.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from ftg_common.settings import Settings

IN_CLUSTER_GATEWAY = "http://gateway.openfaas:8080"
IN_CLUSTER_ARGO = "https://argo-server.argo:2746"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class PlacementError(ValueError):
    """A setting names an address the side using it cannot use; the message names the setting."""


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def workflow_gateway(settings: Settings) -> str:
    """The gateway URL the Workflow's steps call: its ``gateway`` parameter (``FTG_ENGINE=argo``).

    Raises:
        PlacementError: ``FTG_WORKFLOW_GATEWAY_URL`` is not an http(s) URL, or names this machine
            (loopback), which no step in the cluster can reach.
    """
    url = (settings.workflow_gateway_url or IN_CLUSTER_GATEWAY).rstrip("/")
    parts = urlsplit(url)
    if not _is_http(url) or not parts.hostname:
        raise PlacementError(
            f"FTG_WORKFLOW_GATEWAY_URL: {url!r} is not an http(s) URL; it is the OpenFaaS gateway as the "
            f"Workflow's steps reach it inside the cluster (default {IN_CLUSTER_GATEWAY})"
        )
    if _is_loopback(parts.hostname):
        raise PlacementError(
            f"FTG_WORKFLOW_GATEWAY_URL: {url!r} is a loopback address, which inside the cluster names the "
            f"Argo agent's own pod; give the gateway's in-cluster address (default {IN_CLUSTER_GATEWAY}) "
            "and put this machine's address (e.g. a port-forward) in FTG_GATEWAY_URL"
        )
    return url


def check_embedded(settings: Settings) -> None:
    """Refuse ``FTG_WORKFLOW_GATEWAY_URL`` with the embedded engine, which runs the steps in this process.

    Raises:
        PlacementError: it is set and differs from ``FTG_GATEWAY_URL``.
    """
    url = settings.workflow_gateway_url
    if url is not None and url.rstrip("/") != settings.gateway_url.rstrip("/"):
        raise PlacementError(
            f"FTG_WORKFLOW_GATEWAY_URL: {url!r} applies to FTG_ENGINE=argo only; the embedded engine runs "
            f"the steps in this process, through FTG_GATEWAY_URL ({settings.gateway_url!r})"
        )


def driver_gateway(settings: Settings) -> str:
    """The gateway URL the driver's own calls use with ``FTG_ENGINE=argo``.

    Raises:
        PlacementError: ``FTG_GATEWAY_URL`` is not an http(s) URL.
    """
    if not _is_http(settings.gateway_url):
        raise PlacementError(
            f"FTG_GATEWAY_URL: {settings.gateway_url!r}: FTG_ENGINE=argo needs the OpenFaaS gateway as "
            "this machine reaches it (e.g. http://127.0.0.1:8080 through `kubectl port-forward -n openfaas "
            "svc/gateway 8080:8080`), or `submit --in-cluster` in a pod"
        )
    return settings.gateway_url.rstrip("/")


def argo_verify(settings: Settings) -> bool | str:
    """What ``requests`` verifies the Argo server's certificate with: a CA bundle path, or True/False.

    Raises:
        PlacementError: ``FTG_ARGO_CA_BUNDLE`` names no file, or is set while verification is off.
    """
    bundle = settings.argo_ca_bundle
    if not bundle:
        return settings.argo_verify_ssl
    if not settings.argo_verify_ssl:
        raise PlacementError(
            f"FTG_ARGO_CA_BUNDLE: {bundle!r} is set but FTG_ARGO_VERIFY_SSL is false; unset one of them"
        )
    if not Path(bundle).is_file():
        raise PlacementError(f"FTG_ARGO_CA_BUNDLE: no such file {bundle!r} (a PEM file of CA certificates)")
    return bundle


def in_cluster(settings: Settings) -> Settings:
    """``settings`` as a driver in a pod uses them (``submit --in-cluster``).

    The engine is Argo; an explicitly set ``FTG_ARGO_HOST``, ``FTG_ARGO_TOKEN``, ``FTG_ARGO_CA_BUNDLE``
    or http(s) ``FTG_GATEWAY_URL`` is kept, anything unset is taken from the pod: the service account's
    token and ``ca.crt`` (under ``FTG_SERVICE_ACCOUNT_DIR``), the Argo server's and the gateway's
    in-cluster Services. The token is read once: Kubernetes rotates the file hourly but keeps a token it
    issued valid for a year (the API server's default ``--service-account-extend-token-expiration``).

    Raises:
        PlacementError: the service account's token (or, with verification on and no bundle set, its
            ``ca.crt``) is missing, naming the file and ``FTG_SERVICE_ACCOUNT_DIR``.
    """
    account = Path(settings.service_account_dir)
    update: dict[str, object] = {"engine": "argo", "argo_host": settings.argo_host or IN_CLUSTER_ARGO}
    if not settings.argo_token:
        update["argo_token"] = _read(account / "token", "token").strip()
    if settings.argo_verify_ssl and not settings.argo_ca_bundle:
        ca = account / "ca.crt"
        _read(ca, "CA certificate")
        update["argo_ca_bundle"] = str(ca)
    if not _is_http(settings.gateway_url):
        update["gateway_url"] = workflow_gateway(settings)
    return settings.model_copy(update=update)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise PlacementError(
            f"--in-cluster: cannot read the service account's {what} {path} ({exc.strerror or exc}); run "
            "in a pod with a mounted service-account token, or set FTG_SERVICE_ACCOUNT_DIR"
        ) from exc
