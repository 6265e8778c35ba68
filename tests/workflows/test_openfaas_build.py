"""The function images and their deployment agree with the function catalog, for both OpenFaaS editions.

``functions/stack.yml`` (faas-cli, Community Edition), the Makefile's ``images`` target (plain
``docker build``), ``functions/Dockerfile``, ``.dockerignore``, each function's requirements and the
Function resources (Standard/Enterprise) are read as faas-cli, make and Docker read them; no Docker
daemon runs here (tests/integration/test_image_entrypoint.py runs the image's entry point).
"""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from ftg_common.catalog import FUNCTIONS, FunctionSpec
from tests import dockerfile
from tests.make_recipes import recipe_commands
from workflows import openfaas_manifests
from workflows.openfaas_manifests import ManifestError, function_resource, render

ROOT = Path(__file__).resolve().parents[2]
STACK = yaml.safe_load((ROOT / "functions" / "stack.yml").read_text())
SERVE_PROCESS = ["python", "-m", "functions.serve"]
TORCH_PIN = "torch==2.13.0"
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def _function(spec: FunctionSpec) -> dict[str, Any]:
    fn: dict[str, Any] = STACK["functions"][spec.name]
    return fn


def _build_args(spec: FunctionSpec) -> dict[str, str]:
    return {str(k): str(v) for k, v in _function(spec)["build_args"].items()}


# --------------------------------------------------------------------------- stack.yml (faas-cli)


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_faas_cli_builds_each_function_from_the_one_dockerfile(spec: FunctionSpec) -> None:
    fn = _function(spec)
    # A `dockerfile` function: faas-cli builds the handler folder's Dockerfile and deploys no fprocess.
    assert fn["lang"] == "dockerfile"
    assert (ROOT / fn["handler"] / "Dockerfile").samefile(dockerfile.DOCKERFILE)
    assert _build_args(spec) == {"FUNCTION": spec.folder}
    assert PurePosixPath(fn["image"]).name.partition(":")[0] == spec.name  # registry/<function>:<tag>
    assert fn.get("skip_build", False) is False
    # The image alone says what the watchdog starts, for faas-cli deploy and Function resources alike.
    assert "fprocess" not in fn and "fprocess" not in fn["environment"]
    env = dockerfile.image_env(_build_args(spec))
    assert shlex.split(env["fprocess"]) == SERVE_PROCESS
    assert env["FTG_FUNCTION"] == spec.folder
    assert env["mode"] == "http"


def test_faas_cli_build_context_holds_what_the_dockerfile_copies() -> None:
    """For `lang: dockerfile` faas-cli copies the handler folder's files to the context root and each
    `configuration.copy` path (relative to the working directory: the repository root) to the same path,
    so the Dockerfile must find every file it copies under one of those paths."""
    copied = [PurePosixPath(p) for p in STACK["configuration"]["copy"]]
    assert PurePosixPath(".dockerignore") in copied  # the context's filter comes along
    for spec in FUNCTIONS:
        for copy in dockerfile.context_copies(_build_args(spec)):
            source = PurePosixPath(copy.source)
            assert any(source == c or c in source.parents for c in copied), copy
            assert (ROOT / source).exists(), copy
    for path in copied:
        assert (ROOT / path).exists(), path


def test_make_images_builds_each_function_as_the_stack_names_it() -> None:
    builds = recipe_commands("images", ["docker", "build", "-f", "functions/Dockerfile"])
    made = {}
    for argv in builds:
        options = dict(zip(argv[2:-1:2], argv[3:-1:2], strict=True))
        assert argv[-1] == "." and options["-f"] == "functions/Dockerfile", argv
        function = options["--build-arg"].removeprefix("FUNCTION=")
        made[function] = options["-t"]
    assert made == {spec.folder: _function(spec)["image"] for spec in FUNCTIONS}


def test_make_images_without_a_docker_daemon_fails_saying_so(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    out = subprocess.run(
        ["make", "images"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode != 0
    assert "no Docker daemon reachable" in out.stderr
    assert "docker build" not in out.stdout


# --------------------------------------------------------------------------- what goes into the images


def test_dockerignore_keeps_the_build_context_to_the_code_the_images_copy() -> None:
    patterns = dockerfile.ignore_patterns()
    left_out = [
        ".venv/lib/python3.11/site-packages/torch/__init__.py",
        ".git/HEAD",
        ".ftg/gateway-password",
        "mlruns/0/meta.yaml",
        "mlflow.db",
        "mlartifacts/1/model.pt",
        "tests/conftest.py",
        "benchmarks/results/2026-11-29-runtime.json",
        "docs/cluster-openfaas.md",
        "build/rollout-collector/functions/serve.py",  # faas-cli's build folder
        "template/dockerfile/template.yml",  # faas-cli's template folder
        "ftg_common/__pycache__/faas.cpython-311.pyc",
        "functions/policy_updater/__pycache__/handler.cpython-311.pyc",
        "functions/.pytest_cache/v/cache/nodeids",
    ]
    assert [p for p in left_out if not dockerfile.ignored(p, patterns)] == []
    for spec in FUNCTIONS:
        for copy in dockerfile.context_copies(_build_args(spec)):
            root = ROOT / copy.source
            files = (
                [root] if root.is_file() else [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
            )
            assert files, copy
            kept = [f.relative_to(ROOT).as_posix() for f in files]
            assert [p for p in kept if dockerfile.ignored(p, patterns)] == [], copy


def _requirements(spec: FunctionSpec) -> list[str]:
    lines = (ROOT / "functions" / spec.folder / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.name)
def test_only_the_updater_installs_torch_and_from_the_cpu_index(spec: FunctionSpec) -> None:
    lines = _requirements(spec)
    torch = [line for line in lines if line.lower().startswith("torch")]
    options = [line for line in lines if line.startswith("-")]
    if spec.name == "policy-updater":
        assert torch == [TORCH_PIN] and options == [CPU_INDEX]
    else:
        assert torch == [] and options == []
    assert any(line.startswith("waitress") for line in lines)  # functions/serve.py serves with it


def test_the_tests_run_the_torch_the_updater_image_installs() -> None:
    installed = importlib.metadata.version("torch").partition("+")[0]
    assert f"torch=={installed}" == TORCH_PIN


# --------------------------------------------------------------------------- Function resources (Standard)


def test_function_resources_are_the_ones_rendered_from_the_stack_file() -> None:
    committed = (ROOT / "manifests" / "openfaas" / "functions.yaml").read_text()
    assert committed == render(), "run: python -m workflows.openfaas_manifests"
    resources = list(yaml.safe_load_all(committed))
    assert [r["metadata"]["name"] for r in resources] == [spec.name for spec in FUNCTIONS]
    for resource in resources:
        fn = STACK["functions"][resource["metadata"]["name"]]
        assert resource["spec"]["readOnlyRootFilesystem"] is fn["readonly_root_filesystem"] is True


def test_a_stack_entry_maps_to_a_function_as_faas_cli_generate_maps_it() -> None:
    entry = yaml.safe_load(
        """
        lang: dockerfile
        handler: ./functions
        build_args: {FUNCTION: f}
        image: registry.example/f:1
        fprocess: python -m functions.serve
        environment: {exec_timeout: 30s, OMP_NUM_THREADS: 1}
        labels: {com.openfaas.scale.zero: true, com.openfaas.scale.max: 5}
        annotations: {prometheus.io.scrape: "false"}
        constraints: ["node.kubernetes.io/pool=fn"]
        secrets: [ftg-s3]
        limits: {memory: 256Mi}
        readonly_root_filesystem: false
        """
    )
    assert function_resource("f", entry) == {
        "apiVersion": "openfaas.com/v1",
        "kind": "Function",
        "metadata": {"name": "f"},
        "spec": {
            "name": "f",
            "image": "registry.example/f:1",
            "labels": {"com.openfaas.scale.zero": "true", "com.openfaas.scale.max": "5"},
            "annotations": {"prometheus.io.scrape": "false"},
            "environment": {
                "exec_timeout": "30s",
                "OMP_NUM_THREADS": "1",
                "fprocess": "python -m functions.serve",
            },
            "constraints": ["node.kubernetes.io/pool=fn"],
            "secrets": ["ftg-s3"],
            "limits": {"memory": "256Mi"},
        },
    }


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"image": "i", "readonly_rootfs": True}, "functions.f.readonly_rootfs"),
        ({"image": "i", "environment_file": ["env.yml"]}, "functions.f.environment_file"),
        ({"lang": "dockerfile"}, "functions.f.image"),
        ({"image": "i", "limits": {"gpu": "1"}}, "functions.f.limits"),
        ({"image": "i", "labels": {"a": ["b"]}}, "functions.f.labels.a"),
        ({"image": "i", "secrets": "ftg-s3"}, "functions.f.secrets"),
    ],
)
def test_a_stack_entry_the_renderer_cannot_map_is_refused_naming_the_field(
    entry: dict[str, Any], field: str
) -> None:
    with pytest.raises(ManifestError, match=field.replace(".", r"\.")):
        function_resource("f", entry)


def test_check_mode_reports_a_stale_resources_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "functions.yaml"
    assert openfaas_manifests.main(["--output", str(output), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert openfaas_manifests.main(["--output", str(output)]) == 0
    assert output.read_text() == render()
    assert openfaas_manifests.main(["--output", str(output), "--check"]) == 0
    stack = tmp_path / "stack.yml"
    stack.write_text("provider: {name: openfaas}\n")
    assert openfaas_manifests.main(["--stack", str(stack), "--output", str(output)]) == 2
    assert "has no functions" in capsys.readouterr().err
