"""The function entry point's start-up: asyncio is bound but not executed until something uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
import functions.serve as serve
serve._handler()
print("executed-at-start", "asyncio.base_events" in sys.modules, "ssl" in sys.modules)
import pydantic_settings.main as settings_main
# The name pydantic-settings holds still works: the first use imports the real module.
print("delegates", settings_main.asyncio.iscoroutinefunction(print))
import asyncio
async def answer():
    return 42
print("real", type(asyncio).__name__, asyncio.run(answer()), "asyncio.base_events" in sys.modules)
"""


def test_serving_a_function_does_not_execute_asyncio_and_asyncio_still_works(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTG_")}
    env.update(
        FTG_FUNCTION="rollout_collector",
        FTG_STORE_URL=f"file://{tmp_path}/store",
        FTG_META_URL=f"sqlite:///{tmp_path}/meta.db",
    )
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert "executed-at-start False False" in lines
    assert "delegates False" in lines
    assert "real module 42 True" in lines
