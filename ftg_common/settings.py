"""The one place that reads the environment (prefix ``FTG_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
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
    # Metadata store: sqlite:///path.db or redis://host:port/db
    meta_url: str = "sqlite:///.ftg/meta.db"
    # Where the local engine sends function calls: "local" (in-process adapter / warm pool) or http(s)://gateway
    gateway_url: str = "local"
    local_workers: int = Field(default=2, ge=0, description="warm worker processes; 0 runs calls in-process")
    torch_threads: int = Field(default=1, ge=1)
    tracking_uri: str | None = None
    mlflow_experiment: str = "faastraingym"
    argo_host: str | None = None
    argo_token: str | None = None
    argo_namespace: str = "argo"
    argo_verify_ssl: bool = True
    argo_poll_seconds: float = Field(default=1.0, gt=0)
    # Prices for the cost comparison: FaaS per GB-s, a dedicated server per hour
    dedicated_server_usd_per_hour: float = 0.0416
    faas_usd_per_gb_second: float = 0.0000166667


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once and cached."""
    return Settings()
