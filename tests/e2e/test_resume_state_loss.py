"""``resume`` and ``verify`` after state loss: stopped with a message naming every lost object."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console

from ftg_common import layout
from ftg_common.config import load_sweep
from tests.funcs import small_sweep
from workflows.ppo_sweep import main

SWEEP = small_sweep("lossy", {"a": {}}, seeds=[0], max_parallel=1)


@pytest.fixture
def swept(ftg_env: Path) -> tuple[Path, str]:
    from ftg_common.settings import get_settings
    from workflows.sweep import open_services, submit

    services = open_services(get_settings(), tracking=False)
    try:
        submit(load_sweep(SWEEP), services, Console(record=True), sweep_id="lossy-1")
        (run_id,) = services.meta.get_sweep("lossy-1")["runs"]
    finally:
        services.close()
    return ftg_env, run_id


def test_verify_exit_codes_name_every_damaged_key(swept, capsys: pytest.CaptureFixture[str]) -> None:
    root, run_id = swept
    assert main(["verify", run_id]) == 0
    assert "every object intact" in capsys.readouterr().out
    assert main(["verify", "no-such-run"]) == 2
    capsys.readouterr()

    weights = layout.ckpt_weights_key(run_id, 2)
    (root / "store" / weights).unlink()
    assert main(["verify", run_id]) == 1
    out = capsys.readouterr()
    assert f"{weights}: missing:" in out.out and "1 damaged object(s)" in out.err


def test_resume_after_a_committed_object_is_lost_names_it(swept, capsys: pytest.CaptureFixture[str]) -> None:
    root, run_id = swept
    update = layout.update_key(run_id, 1)
    (root / "store" / update).write_bytes(b"{not json")
    assert main(["resume", "lossy-1", "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert f"{update}: corrupt:" in err and "cannot resume lossy-1: 1 object(s)" in err


def test_resume_after_the_object_store_is_wiped_names_what_is_missing(
    swept, capsys: pytest.CaptureFixture[str]
) -> None:
    root, run_id = swept
    shutil.rmtree(root / "store")
    assert main(["resume", run_id, "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert f"{layout.config_key(run_id)}: missing:" in err
    assert f"{layout.sweep_trial_key('lossy-1', run_id)}: missing:" in err
    assert f"{layout.ckpt_weights_key(run_id, 4)}: missing:" in err
    assert "Traceback" not in err
