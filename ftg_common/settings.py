"""The one place that reads the environment (prefix ``FTG_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Deployment settings, read from ``FTG_*`` environment variables (e.g. ``FTG_STORE_URL``)."""

    model_config = SettingsConfigDict(env_prefix="FTG_", extra="ignore")

    engine: Literal["local", "argo"] = "local"
    # In a function container: which handler this image serves (functions/serve.py)
    function: str | None = None
    # Object store: file:///abs/dir or s3://bucket/prefix
    store_url: str = "file://.ftg/store"
    store_fsync: bool = False
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # An AWS shared credentials file (INI, [profile] with aws_access_key_id/aws_secret_access_key). Unset:
    # the OpenFaaS secret /var/openfaas/secrets/ftg-s3 when it is mounted, else boto3's own chain
    # (environment, ~/.aws, instance roles); an empty value skips the secret and uses boto3's chain.
    s3_credentials_file: str | None = None
    s3_profile: str = "default"
    # Create the store's bucket when it is missing; false: fail naming the bucket instead.
    s3_create_bucket: bool = True
    # Metadata store: sqlite:///path.db or redis://host:port/db
    meta_url: str = "sqlite:///.ftg/meta.db"
    # Where this process (the driver) sends function calls: "local" (in-process adapter / warm pool) or
    # http(s)://gateway. With FTG_ENGINE=argo it is only the driver's own calls (e.g. port-forwarded).
    gateway_url: str = "local"
    # The gateway as the Workflow's steps reach it (its `gateway` parameter), FTG_ENGINE=argo only. Unset:
    # the OpenFaaS Service http://gateway.openfaas:8080 (workflows/placement.py).
    workflow_gateway_url: str | None = None
    local_workers: int = Field(default=2, ge=0, description="warm worker processes; 0 runs calls in-process")
    # Warm workers and their reader poll their pipes for this long around a call's end instead of
    # sleeping (a sleeping process's wake-up is most of a call's overhead); 0 never polls.
    pool_spin_us: int = Field(default=300, ge=0, le=100_000)
    # The embedded engine sends a DAG step ahead to the worker running the step it waits for, which
    # starts it on a 2xx answer (workflows/engines/follow_on.py); false: every step goes through it.
    pool_follow_ons: bool = True
    # Iterations the embedded engine runs back to back as one stream (workflows/engines/stream.py): the
    # next starts the moment the previous one's last call ends, while the driver records that one.
    local_iterations_per_workflow: int = Field(default=1, ge=1, le=1024)
    # The cyclic garbage collector's thresholds in the driver and the warm workers (ftg_common/gc_policy.py);
    # [] keeps Python's own (700, 10, 10). JSON in the environment: FTG_GC_THRESHOLDS='[20000,20,20]'.
    gc_thresholds: list[int] = Field(default_factory=lambda: [20_000, 20, 20])
    torch_threads: int = Field(default=1, ge=1)
    tracking_uri: str | None = None
    mlflow_experiment: str = "faastraingym"
    argo_host: str | None = None
    argo_token: str | None = None
    argo_namespace: str = "argo"
    argo_verify_ssl: bool = True
    # A PEM file of the CA(s) that issued the Argo server's certificate, verified against instead of the
    # system's CAs (needs FTG_ARGO_VERIFY_SSL true).
    argo_ca_bundle: str | None = None
    # `submit --in-cluster`: the pod's service account (token, ca.crt) authenticates to the Argo server.
    service_account_dir: str = "/var/run/secrets/kubernetes.io/serviceaccount"
    argo_poll_seconds: float = Field(default=1.0, gt=0)
    # Iterations chained in one Argo Workflow (`submit --iterations-per-workflow`): fewer agent pods and
    # Workflow starts per run, the same results (docs/argo-latency.md). FTG_ENGINE=argo only.
    argo_iterations_per_workflow: int = Field(default=1, ge=1, le=64)
    # Prices for the cost comparison: FaaS per GB-s, a dedicated server per hour
    dedicated_server_usd_per_hour: float = 0.0416
    faas_usd_per_gb_second: float = 0.0000166667
    # A sweep's best configuration takes the `champion` alias only when P(it beats the champion's
    # configuration) has a 95% CI whose lower end is above this (0.5: the CI excludes a coin flip).
    champion_min_p: float = Field(default=0.5, ge=0.5, lt=1.0)
    # The local OpenFaaS-compatible gateway (workflows/gateway). /system/* needs basic auth as user admin
    # with this password, or the one in this file (a mounted secret); with neither, one is generated.
    gateway_password: SecretStr | None = None
    gateway_password_file: str | None = None
    gateway_max_replicas: int = Field(default=64, ge=1, description="replicas on this machine, all functions")
    gateway_max_starting: int = Field(default=0, ge=0, description="replicas starting at once; 0: CPU count")
    gateway_scale_down_seconds: float = Field(
        default=30.0, ge=0, description="idle seconds before a replica above the wanted count is stopped"
    )
    gateway_zero_duration_seconds: float | None = Field(
        default=None, ge=0, description="overrides every function's com.openfaas.scale.zero-duration"
    )
    gateway_start_timeout_seconds: float = Field(
        default=60.0, gt=0, description="seconds a replica may take to answer its first health check"
    )
    # The embedded engine on an http(s) gateway: every function call through /async-function + a callback
    # server in the driver (workflows/engines/async_invoker.py) instead of one held connection per call.
    gateway_async: bool = False
    gateway_callback_bind: str = Field(default="127.0.0.1:0", description="callback server host:port")
    gateway_callback_url: str | None = Field(
        default=None, description="the callback server's base URL as the gateway reaches it"
    )

    # The gateway's async queue (workflows/gateway/async_queue.py): "nats" is NATS JetStream (durable),
    # "memory" an in-process queue (lost with the process), "auto" JetStream when it answers, else memory.
    async_queue: Literal["nats", "memory", "auto"] = "auto"
    nats_url: str = "nats://127.0.0.1:4222"
    async_stream: str = Field(
        default="ftg-async",
        max_length=64,
        pattern=r"^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$",
        description="JetStream stream; its subjects are the name with '-' as '.' (ftg.async.<function>)",
    )
    async_max_queued: int = Field(default=10_000, ge=1, description="calls queued or in flight; then 429")
    # As many as the machine-wide replica cap, so a queued fan-out can use every replica it may start.
    async_concurrency: int = Field(default=64, ge=1, description="async calls in flight per gateway")
    async_ack_wait_s: float = Field(
        default=30.0, gt=0, description="seconds without a heartbeat before a call is redelivered"
    )
    async_max_deliver: int = Field(
        default=5, ge=1, description="tries of a call (crashes, 429/502/503/504) before it is given up"
    )
    async_backoff_s: float = Field(
        default=0.5, ge=0, description="first delay between tries of a call or a callback; doubles each time"
    )
    async_callback_attempts: int = Field(default=4, ge=1, description="tries of one callback POST")
    async_callback_timeout_s: float = Field(default=10.0, gt=0, description="seconds per callback POST")

    # Traces (ftg_common/tracing.py): exported with OTLP over HTTP when an endpoint is set, by the
    # OpenTelemetry variable names every collector's documentation uses; off otherwise.
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
    otel_service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once and cached."""
    return Settings()
