"""Container entry point: serve one function's handler on :5000 behind the of-watchdog (http mode).

The image's ``FTG_FUNCTION`` names the function, by its handler folder (``rollout_collector``) or its
catalog name (``rollout-collector``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from ftg_common.catalog import FUNCTIONS
from ftg_common.faas import wsgi_app
from ftg_common.settings import get_settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


@lru_cache(maxsize=1)
def _handler() -> WSGIApplication:
    """The WSGI app of the function named by the settings; exits if it names none of the catalog's."""
    name = get_settings().function
    for spec in FUNCTIONS:
        if name in (spec.folder, spec.name):
            return wsgi_app(spec.module)
    known = ", ".join(spec.folder for spec in FUNCTIONS)
    raise SystemExit(f"FTG_FUNCTION must name a function ({known}), got {name!r}")


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """WSGI entry: the configured function's app."""
    return _handler()(environ, start_response)


if __name__ == "__main__":
    from waitress import serve

    _handler()  # fail fast, and pay the imports before the first request
    serve(app, host="127.0.0.1", port=5000)
