"""Basic auth of the gateway's ``/system/*`` API, as OpenFaaS's: user ``admin``, one password.

The password comes from ``FTG_GATEWAY_PASSWORD``, else from the file ``FTG_GATEWAY_PASSWORD_FILE``
names (a mounted secret, as OpenFaaS's ``basic-auth-password``), else it is generated and kept in
``.ftg/gateway-password`` (mode 0600) under the working directory, reused by later starts.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ftg_common.settings import Settings

USER = "admin"
GENERATED_FILE = Path(".ftg") / "gateway-password"


class PasswordError(RuntimeError):
    """The configured password cannot be read."""


@dataclass(frozen=True)
class BasicAuth:
    """Checks ``Authorization`` headers against one user and password.

    Attributes:
        password: the password of user ``admin``.
        source: where it came from (for the start-up message; never the password itself).
    """

    password: str
    source: str = "given"
    user: str = USER

    def allows(self, header: str | None) -> bool:
        """Whether ``header`` (an ``Authorization`` value) carries this user and password."""
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Both compared in constant time, so a wrong guess takes as long as any other.
        ok_user = hmac.compare_digest(user, self.user.encode())
        ok_password = hmac.compare_digest(password, self.password.encode())
        return bool(sep) and ok_user and ok_password

    def header(self) -> str:
        """An ``Authorization`` value that :meth:`allows` accepts (for clients and tests)."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"


def _generated(path: Path) -> BasicAuth:
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    try:
        # Created readable by its owner only, never world-readable even for an instant; O_EXCL so two
        # gateways starting together agree on one password.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        kept = path.read_text().strip()
        if not kept:
            raise PasswordError(f"{path} is empty: delete it to generate a new password") from None
        return BasicAuth(kept, f"the file {path}")
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return BasicAuth(password, f"the file {path} (generated)")


def from_settings(settings: Settings) -> BasicAuth:
    """The gateway's basic auth from the settings (see the module docstring for the order).

    Raises:
        PasswordError: the password file cannot be read or is empty.
    """
    if settings.gateway_password is not None:
        value = settings.gateway_password.get_secret_value()
        if value:
            return BasicAuth(value, "FTG_GATEWAY_PASSWORD")
    if settings.gateway_password_file:
        path = Path(settings.gateway_password_file)
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise PasswordError(f"FTG_GATEWAY_PASSWORD_FILE {path}: {exc.strerror or exc}") from exc
        if not value:
            raise PasswordError(f"FTG_GATEWAY_PASSWORD_FILE {path} is empty")
        return BasicAuth(value, f"the file {path}")
    try:
        return _generated(GENERATED_FILE)
    except OSError as exc:
        raise PasswordError(f"cannot keep a generated password in {GENERATED_FILE}: {exc}") from exc
