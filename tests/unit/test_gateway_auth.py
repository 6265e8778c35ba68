"""Basic auth of the gateway's /system/* API: where the password comes from, and what is accepted."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from ftg_common.settings import Settings
from workflows.gateway import auth
from workflows.gateway.auth import BasicAuth


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_only_admin_with_the_password_is_allowed() -> None:
    gate = BasicAuth("s3cret:with colon")
    assert gate.allows(gate.header())
    assert gate.allows(basic("admin:s3cret:with colon"))
    assert gate.allows("basic " + gate.header().split()[1])  # the scheme is case-insensitive
    for header in [
        None,
        "",
        basic("admin:wrong"),
        basic("root:s3cret:with colon"),
        basic("admin"),
        basic("admin:"),
        "Bearer " + gate.header().split()[1],
        "Basic not*base64",
        "Basic",
    ]:
        assert not gate.allows(header), header


def test_the_password_comes_from_the_setting_then_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "basic-auth-password"
    secret.write_text("from-file\n")
    both = Settings(gateway_password=SecretStr("from-env"), gateway_password_file=str(secret))
    assert auth.from_settings(both).password == "from-env"
    got = auth.from_settings(Settings(gateway_password_file=str(secret)))
    assert got.password == "from-file" and str(secret) in got.source
    assert "from-env" not in repr(both)  # the setting is a secret: never printed


def test_an_unreadable_or_empty_password_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(auth.PasswordError, match="FTG_GATEWAY_PASSWORD_FILE"):
        auth.from_settings(Settings(gateway_password_file=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(auth.PasswordError, match="empty"):
        auth.from_settings(Settings(gateway_password_file=str(empty)))


def test_without_a_password_one_is_generated_private_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = auth.from_settings(Settings())
    kept = tmp_path / auth.GENERATED_FILE
    assert kept.read_text().strip() == first.password and len(first.password) >= 24
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    assert auth.from_settings(Settings()).password == first.password  # the next start reuses it
