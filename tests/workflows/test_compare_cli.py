"""The ``compare`` and ``export`` commands on real (tiny) sweeps: JSON, pictures, the gate's exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ftg_common.config import load_sweep
from tests.funcs import small_sweep

CONFIGS: dict[str, dict[str, Any]] = {"cand": {}, "base": {"learning_rate": 0.00001}}
SWEEP = small_sweep("cli", CONFIGS, seeds=[0, 1])


def _submit(sweep_id: str, text: str = SWEEP) -> None:
    from ftg_common.settings import get_settings
    from workflows.sweep import open_services, submit

    services = open_services(get_settings(), tracking=False)
    try:
        submit(load_sweep(text), services, Console(record=True, width=200), sweep_id=sweep_id)
    finally:
        services.close()


def _set_finals(sweep_id: str, finals: dict[str, float]) -> None:
    """Give each config's trials these final returns (+ seed): a result the gate can decide on."""
    from ftg_common import runtime

    meta = runtime.meta()
    for rec in meta.list_runs(sweep_id):
        extra = rec["extra"]
        summary = {**extra["summary"], "final_return": finals[extra["config_name"]] + extra["seed"]}
        meta.update_extra(rec["run_id"], {"summary": summary})


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from workflows.ppo_sweep import build_parser

    # The command itself, not main(): main also configures this process's tracing, once and for good.
    args = build_parser().parse_args(list(argv))
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compare_json_plots_gate_and_cross_sweep(ftg_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _submit("cli-1")
    capsys.readouterr()
    code, out, _ = _cli(capsys, "compare", "cli-1", "--json")
    data = json.loads(out)
    assert code == 0 and data["sweeps"] == ["cli-1"]
    assert [r["config"] for r in data["configs"]] == ["cand", "base"] and data["configs"][0]["seeds"] == 2
    (pair,) = data["probability_of_improvement"]
    assert (pair["a"], pair["b"]) == ("cand", "base") and 0.0 <= pair["ci_low"] <= pair["p"] <= pair[
        "ci_high"
    ]
    points = data["sample_efficiency"]["cand"]
    assert [p["fraction"] for p in points] == [0.1, 0.25, 0.5, 1.0] and points[-1]["steps"] == 512

    # The gate: exit 1 while the candidate is not shown better, 0 once it is; the verdicts end the table.
    _set_finals("cli-1", {"cand": 100.0, "base": 100.0})
    code, out, err = _cli(
        capsys, "compare", "cli-1", "--require-winner", "cand", "--plots", str(ftg_env / "p")
    )
    assert code == 1 and "gate failed: cand is not better: cand vs base: no decision" in err
    assert (
        out.rstrip().splitlines()[-1].strip().startswith("cand vs base: no decision at this number of seeds")
    )
    assert sorted(p.name for p in (ftg_env / "p").iterdir()) == [
        "learning_curves.png",
        "performance_profile.png",
        "probability_of_improvement.png",
    ]
    _set_finals("cli-1", {"cand": 300.0, "base": 20.0})
    code, _, err = _cli(capsys, "compare", "cli-1", "--json", "--require-winner", "cand")
    assert code == 0 and "gate passed: cand beats base: P = 1.00 [1.00, 1.00]" in err
    code, _, err = _cli(capsys, "compare", "cli-1", "--json", "--require-winner", "base")
    assert code == 1 and "gate failed: base is not better: cand beats base" in err
    code, out, err = _cli(capsys, "compare", "cli-1", "--require-winner", "nope")
    assert code == 2 and "'nope' has no decided comparison" in err and out == ""

    # Two sweeps: shared names are qualified by sweep; a different budget is refused.
    _submit("cli-2", small_sweep("cli", {"cand": {}}, seeds=[0, 1]))
    capsys.readouterr()
    code, out, _ = _cli(capsys, "compare", "cli-1", "cli-2", "--json")
    data = json.loads(out)
    assert code == 0 and [r["config"] for r in data["configs"]] == ["cli-1:cand", "base", "cli-2:cand"]
    assert len(data["probability_of_improvement"]) == 3
    _submit("cli-3", small_sweep("cli", CONFIGS, seeds=[0, 1], total_steps=1024))
    capsys.readouterr()
    code, out, err = _cli(capsys, "compare", "cli-1", "cli-3")
    assert code == 2 and "different step budgets" in err and out == ""
    code, _, err = _cli(capsys, "compare", "cli-1", "nope")
    assert code == 2 and "no sweep named 'nope'" in err

    # export: the run's last version by default; refusals name the field and exit 2.
    code, _, err = _cli(
        capsys, "export", "cli-1-cand-s0", "--format", "safetensors", "-o", str(ftg_env / "x.st")
    )
    assert code == 0 and "policy version 4" in err and (ftg_env / "x.st").exists()
    code, _, err = _cli(
        capsys, "export", "cli-1-cand-s0", "--format", "onnx", "-o", "y.onnx", "--version", "9"
    )
    assert code == 2 and err.startswith("error: --version: ") and "no policy version 9" in err
    code, _, err = _cli(capsys, "export", "ghost", "--format", "onnx", "-o", "z.onnx")
    assert code == 2 and err.startswith("error: RUN_ID: ") and "no run named 'ghost'" in err
    code, _, err = _cli(capsys, "export", "Bad/Id", "--format", "onnx", "-o", "z.onnx")
    assert code == 2 and "RUN_ID" in err
    assert not (ftg_env / "y.onnx").exists() and not (ftg_env / "z.onnx").exists()


def test_export_refuses_a_run_that_never_finished_a_version(
    ftg_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.funcs import new_run

    new_run("fresh-run")
    code, _, err = _cli(capsys, "export", "fresh-run", "--format", "torchscript", "-o", "f.pt")
    assert code == 2 and "run 'fresh-run' never finished a policy version" in err
    assert not (ftg_env / "f.pt").exists()
