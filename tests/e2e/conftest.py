"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def services(ftg_env: Any) -> Iterator[Any]:
    """Stores and the embedded engine (warm pool) of a fresh state directory, without MLflow."""
    from ftg_common.settings import get_settings
    from workflows.sweep import open_services

    svc = open_services(get_settings(), tracking=False)
    yield svc
    svc.close()
