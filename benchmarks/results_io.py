"""Where a benchmark's record goes, and the command-line options and checkout labels that say so.

Every benchmark writes one record as ``<date>-<name>[-<suffix>].json`` with a markdown rendering of it
next to it under ``benchmarks/results/``; the ones that compare checkouts name them ``LABEL=PATH`` and
record each one's git revision (a path on the measuring machine says nothing to a reader).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from machine_info import machine_sentence  # a sibling of this module

RESULTS = Path(__file__).resolve().parent / "results"


def utc_timestamp() -> str:
    """The ``date`` of a record: now, to the minute, in UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def result_stem(name: str, suffix: str = "") -> str:
    """``<today>-<name>`` (UTC), with ``-<suffix>`` when one is given."""
    return time.strftime("%Y-%m-%d", time.gmtime()) + f"-{name}" + (f"-{suffix}" if suffix else "")


def write_result(out: str | Path, stem: str, record: dict[str, Any], markdown: str) -> Path:
    """Write ``record`` as ``<out>/<stem>.json`` and ``markdown`` as ``<out>/<stem>.md``.

    Args:
        out: the results folder (created if missing).
        stem: the files' name without extension (see :func:`result_stem`).
        record: the JSON-serialisable record.
        markdown: its rendering for readers.

    Returns:
        The JSON file's path.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(record, indent=2))
    (folder / f"{stem}.md").write_text(markdown)
    return path


def publish(out: str | Path, name: str, record: dict[str, Any], markdown: str, *, suffix: str = "") -> Path:
    """Write benchmark ``name``'s record under today's stem (:func:`write_result`); print ``markdown``.

    Returns:
        The JSON file's path.
    """
    path = write_result(out, result_stem(name, suffix), record, markdown)
    print(markdown)
    return path


def add_output_arguments(ap: argparse.ArgumentParser, *, notes: str = "a paragraph") -> None:
    """``--out``, ``--suffix`` and ``--notes``: where the result goes, its name's tail, a note in it.

    Args:
        ap: the benchmark's parser.
        notes: what ``--notes`` takes, for its help ("a sentence", "a paragraph").
    """
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--suffix", default="", help="appended to the result file name")
    ap.add_argument("--notes", default="", help=f"{notes} for the markdown result")


def add_roots_argument(ap: argparse.ArgumentParser, default: Path) -> None:
    """``--roots``: the checkouts to measure, parsed by :func:`parse_roots`."""
    ap.add_argument(
        "--roots",
        default=str(default),
        help="checkouts to measure, interleaved run by run: PATH or LABEL=PATH,LABEL=PATH "
        "(default: this one)",
    )


def parse_roots(spec: str) -> dict[str, Path]:
    """``label=path,label=path`` (or one bare path, labelled ``this``) -> label -> checkout."""
    out: dict[str, Path] = {}
    for part in spec.split(","):
        label, _, path = part.rpartition("=")
        out[label or "this"] = Path(path).resolve()
    return out


def checkout_record(
    machine: dict[str, Any],
    roots: dict[str, Path],
    notes: str,
    *,
    revisions: dict[str, str] | None = None,
    own_checkout: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """The record of a benchmark that compares checkouts: date, machine, each checkout's revision, ``fields``.

    Other work on the machine inflates every figure, so a reader compares the checkouts' ratios; the
    revision identifies a checkout, as its path on the measuring machine says nothing to a reader.

    Args:
        machine: the ``machine`` object (see ``machine_info``).
        roots: label -> checkout (see :func:`parse_roots`).
        notes: the ``--notes`` paragraph, last in the record.
        revisions: label -> what a checkout holds, for the ones git cannot say (a snapshot).
        own_checkout: see :func:`git_revision`.
        **fields: the benchmark's own entries, in order, between the roots and the notes.
    """
    described = revisions or {}
    return {
        "date": utc_timestamp(),
        "machine": machine,
        "roots": {
            label: {"revision": described.get(label) or git_revision(root, own_checkout=own_checkout)}
            for label, root in roots.items()
        },
        **fields,
        "notes": notes,
    }


def checkout_sentence(record: dict[str, Any]) -> str:
    """``Machine: ... Revision: <label>: <revision>; ... ``: how a checkout-comparing result starts."""
    revisions = "; ".join(f"{label}: {d['revision']}" for label, d in record["roots"].items())
    return f"{machine_sentence(record['machine'])} Revision: {revisions}. "


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def git_revision(root: Path, *, own_checkout: bool = True) -> str:
    """The short HEAD of the checkout at ``root``, ``+ working tree`` if tracked files are changed.

    Args:
        root: the checkout.
        own_checkout: ``root`` must be the top of its git work tree; a folder inside another checkout
            (an unpacked snapshot) would otherwise report that checkout's revision.

    Returns:
        The revision; for a ``git archive`` snapshot the archived commit (see :data:`ARCHIVE_REVISION`);
        else ``not a git checkout``.
    """
    try:
        head = _git(root, "rev-parse", "--short", "HEAD")
        if own_checkout and Path(_git(root, "rev-parse", "--show-toplevel")).resolve() != root:
            return archived_revision(root)
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
        return f"{head}{' + working tree' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        return archived_revision(root)


ARCHIVE_REVISION = Path("benchmarks") / "ARCHIVE_REVISION"
"""A file ``git archive`` fills in with the archived commit (``export-subst`` in ``.gitattributes``)."""


def archived_revision(root: Path) -> str:
    """The commit a ``git archive`` snapshot at ``root`` was made from, or ``not a git checkout``."""
    try:
        text = (root / ARCHIVE_REVISION).read_text().strip()
    except OSError:
        return "not a git checkout"
    if not text or text.startswith("$Format"):  # a checkout's own copy, never substituted
        return "not a git checkout"
    return f"{text} (a git archive snapshot)"
