"""OpenFaaS ``Function`` resources rendered from ``functions/stack.yml``: one source for both editions.

OpenFaaS Community Edition deploys the functions with ``faas-cli deploy -f functions/stack.yml``;
Standard and Enterprise apply ``Function`` custom resources (``openfaas.com/v1``), which only their
operator acts on. The stack file is the source of both: this module renders
``manifests/openfaas/functions.yaml`` from it, mapping the fields as ``faas-cli generate`` does, and a
test checks that the committed file is the rendered one.

    python -m workflows.openfaas_manifests            # rewrite manifests/openfaas/functions.yaml
    python -m workflows.openfaas_manifests --check    # exit 1 when it differs from the stack file
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
STACK_FILE = ROOT / "functions" / "stack.yml"
FUNCTIONS_FILE = ROOT / "manifests" / "openfaas" / "functions.yaml"
API_VERSION = "openfaas.com/v1"
HEADER = (
    "# Function resources for OpenFaaS Standard/Enterprise, rendered from functions/stack.yml\n"
    "# by `python -m workflows.openfaas_manifests`: edit the stack file, then run that command.\n"
)

# Stack keys that only say how to build the image: a Function resource names the built image instead.
BUILD_KEYS = frozenset(
    {"lang", "handler", "build_args", "build_options", "build_secrets", "platforms", "skip_build"}
)
# Stack keys mapped into the resource: stack key -> Function spec field.
MAPPED_KEYS = {
    "labels": "labels",
    "annotations": "annotations",
    "environment": "environment",
    "constraints": "constraints",
    "secrets": "secrets",
    "limits": "limits",
    "requests": "requests",
    "readonly_root_filesystem": "readOnlyRootFilesystem",
}
RESOURCE_KEYS = frozenset({"cpu", "memory"})


class ManifestError(ValueError):
    """A stack file this renderer cannot map to Function resources; the message names the field."""


def _text(value: Any, where: str) -> str:
    """A YAML scalar as the string faas-cli reads into a string field (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ManifestError(f"{where} must be a string or a number, got {type(value).__name__}")


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where} must be a mapping, got {type(value).__name__}")
    return {str(k): _text(v, f"{where}.{k}") for k, v in value.items()}


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ManifestError(f"{where} must be a list, got {type(value).__name__}")
    return [_text(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _spec_value(key: str, value: Any, where: str) -> Any:
    if key == "readonly_root_filesystem":
        if not isinstance(value, bool):
            raise ManifestError(f"{where} must be true or false, got {value!r}")
        return value
    if key in ("constraints", "secrets"):
        return _string_list(value, where)
    mapped = _string_map(value, where)
    if key in ("limits", "requests") and not set(mapped) <= RESOURCE_KEYS:
        raise ManifestError(f"{where} may set only cpu and memory, got {sorted(set(mapped) - RESOURCE_KEYS)}")
    return mapped


def function_resource(name: str, function: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Function`` resource of one stack entry.

    Args:
        name: the function's name (its key under ``functions``).
        function: its stack entry.

    Returns:
        The resource, its ``spec`` fields in a fixed order.

    Raises:
        ManifestError: a key the stack schema does not have or this renderer does not map, or a value
            of the wrong type; the message names the field.
    """
    where = f"functions.{name}"
    unknown = sorted(set(function) - BUILD_KEYS - set(MAPPED_KEYS) - {"image", "fprocess"})
    if unknown:
        raise ManifestError(f"{where}.{unknown[0]}: not a stack key this renderer maps to a Function")
    image = function.get("image")
    if not isinstance(image, str) or not image:
        raise ManifestError(f"{where}.image is required (the image to run)")
    spec: dict[str, Any] = {"name": name, "image": image}
    for key, field in MAPPED_KEYS.items():
        if key in function:
            spec[field] = _spec_value(key, function[key], f"{where}.{key}")
    if "fprocess" in function:
        # faas-cli deploy sends a stack fprocess as the container's `fprocess` variable; a Function has no
        # such field, so it goes into the environment and both editions start the same process.
        spec.setdefault("environment", {})["fprocess"] = _text(function["fprocess"], f"{where}.fprocess")
    if spec.get("readOnlyRootFilesystem") is False:
        del spec["readOnlyRootFilesystem"]  # false is the default, and faas-cli generate omits it
    return {"apiVersion": API_VERSION, "kind": "Function", "metadata": {"name": name}, "spec": spec}


def render(stack_file: Path = STACK_FILE) -> str:
    """``manifests/openfaas/functions.yaml`` as rendered from ``stack_file``: one resource per function.

    Raises:
        ManifestError: an unreadable stack file, one without functions, or a function it cannot map.
    """
    try:
        doc = yaml.safe_load(stack_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read stack file {stack_file}: {exc}") from exc
    functions = doc.get("functions") if isinstance(doc, Mapping) else None
    if not isinstance(functions, Mapping) or not functions:
        raise ManifestError(f"stack file {stack_file} has no functions")
    resources = []
    for name, function in functions.items():
        if not isinstance(function, Mapping):
            raise ManifestError(f"functions.{name} must be a mapping")
        resources.append(function_resource(str(name), function))
    return HEADER + yaml.safe_dump_all(resources, sort_keys=False, default_flow_style=False)


def main(argv: list[str] | None = None) -> int:
    """Write the rendered resources, or with ``--check`` report whether the committed file is stale."""
    parser = argparse.ArgumentParser(
        description="Render OpenFaaS Function resources from functions/stack.yml."
    )
    parser.add_argument("--stack", type=Path, default=STACK_FILE, help="stack file (default: %(default)s)")
    parser.add_argument(
        "--output", type=Path, default=FUNCTIONS_FILE, help="resources file (default: %(default)s)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the output file is not the rendered one"
    )
    args = parser.parse_args(argv)
    try:
        text = render(args.stack)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text() if args.output.exists() else None
        if current != text:
            print(f"{args.output} is stale: run python -m workflows.openfaas_manifests", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
