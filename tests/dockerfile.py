"""Reading ``functions/Dockerfile`` and ``.dockerignore`` as Docker does, for the tests of the images.

No Docker daemon runs here, so the tests read the files the build reads: the Dockerfile's instructions
(continuation lines joined, comments dropped, ``${VAR}`` substituted from build arguments and earlier
``ENV``), and the ``.dockerignore`` patterns with Docker's matching rules (Go ``filepath.Match`` per
path segment, ``**`` for any number of directories, a pattern also matching every path below a
directory it matches, the last matching pattern deciding, ``!`` re-including).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "functions" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined and comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        pending = ""
        yield word.upper(), rest.strip()


def substitute(value: str, variables: Mapping[str, str]) -> str:
    """``${VAR}`` and ``$VAR`` replaced; a variable the build does not define is a KeyError."""
    return _VAR.sub(lambda m: variables[m.group(1) or m.group(2)], value)


def image_env(build_args: Mapping[str, str], text: str | None = None) -> dict[str, str]:
    """The environment the image's ``ENV`` instructions set, for these build arguments."""
    variables = dict(build_args)
    env: dict[str, str] = {}
    for word, rest in instructions(DOCKERFILE.read_text() if text is None else text):
        if word != "ENV":
            continue
        for token in shlex.split(rest):
            key, sep, value = token.partition("=")
            if not sep:
                raise ValueError(f"ENV {rest!r}: only the key=value form is read here")
            env[key] = variables[key] = substitute(value, variables)
    return env


@dataclass(frozen=True)
class Copy:
    """One ``COPY`` from the build context: ``source`` relative to the context, ``dest`` to WORKDIR."""

    source: str
    dest: str


def context_copies(build_args: Mapping[str, str], text: str | None = None) -> list[Copy]:
    """The ``COPY`` instructions that read the build context (not ``--from`` another stage)."""
    copies = []
    for word, rest in instructions(DOCKERFILE.read_text() if text is None else text):
        parts = rest.split()
        if word != "COPY" or any(p.startswith("--from") for p in parts):
            continue
        *sources, dest = (substitute(p, build_args) for p in parts if not p.startswith("--"))
        copies += [Copy(source, dest) for source in sources]
    return copies


def _segment_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            char = pattern[i]
            out.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
            i += 1
    return re.compile("".join(out))


def ignore_patterns(text: str | None = None) -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, re-includes) of each ``.dockerignore`` line, in order."""
    patterns = []
    for raw in (DOCKERIGNORE.read_text() if text is None else text).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = line.removeprefix("!").strip().strip("/")
        patterns.append((_segment_regex(cleaned), negated))
    return patterns


def ignored(path: str, patterns: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context, ``/``-separated) out of the context."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for regex, negated in patterns:
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded
