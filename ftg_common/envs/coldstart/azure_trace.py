"""Reader and writer of the Azure Functions 2019 per-minute invocation files.

The public dataset (``invocations_per_function_md.anon.d01.csv`` ... ``d14``) has one file per day and
one row per function: ``HashOwner,HashApp,HashFunction,Trigger`` then 1440 columns named ``1`` ...
``1440``, the function's invocations in each minute of the day. Only the standard library's ``csv``
and numpy are used; nothing is evaluated from the file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ID_COLUMNS", "MINUTES", "AzureCounts", "load_azure_counts", "write_azure_counts"]

ID_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Trigger")
MINUTES = 1440


class AzureTraceError(ValueError):
    """A file that is not in the Azure 2019 per-minute format (the message names the row and column)."""


@dataclass(frozen=True, eq=False)  # holds an array: compare fields, not tables
class AzureCounts:
    """The rows of one day's file.

    Attributes:
        owners: HashOwner per row.
        apps: HashApp per row.
        functions: HashFunction per row.
        triggers: Trigger per row (http, timer, queue, event, orchestration, storage, others).
        counts: invocations per minute, int64 [N, minutes].
    """

    owners: tuple[str, ...]
    apps: tuple[str, ...]
    functions: tuple[str, ...]
    triggers: tuple[str, ...]
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.functions)

    def by_app(self) -> AzureCounts:
        """Counts summed per (owner, app), in first-seen order (the unit of the ATC'20 statistics).

        The function and trigger of an app row are those of its first function.
        """
        index: dict[tuple[str, str], int] = {}
        first: list[int] = []
        rows = np.empty(len(self), dtype=np.int64)
        for i, key in enumerate(zip(self.owners, self.apps, strict=True)):
            if key not in index:
                index[key] = len(first)
                first.append(i)
            rows[i] = index[key]
        counts = np.zeros((len(first), self.counts.shape[1]), dtype=np.int64)
        np.add.at(counts, rows, self.counts)
        pick = [self.owners[i] for i in first], [self.apps[i] for i in first]
        return AzureCounts(
            tuple(pick[0]),
            tuple(pick[1]),
            tuple(self.functions[i] for i in first),
            tuple(self.triggers[i] for i in first),
            counts,
        )


def _check_header(header: list[str], path: Path, minutes: int) -> None:
    expected = [*ID_COLUMNS, *(str(m) for m in range(1, minutes + 1))]
    if header != expected:
        for col, (got, want) in enumerate(zip(header, expected, strict=False)):
            if got != want:
                raise AzureTraceError(f"{path}: header column {col + 1} is {got!r}, expected {want!r}")
        raise AzureTraceError(f"{path}: header has {len(header)} columns, expected {len(expected)}")


def load_azure_counts(path: str | Path, minutes: int = MINUTES) -> AzureCounts:
    """Read one day's per-minute invocation file.

    Raises:
        AzureTraceError: a missing file, a header that is not the format's, or a row with the wrong
            number of columns or a count that is not a non-negative integer (naming row and column).
    """
    path = Path(path)
    if not path.is_file():
        raise AzureTraceError(f"trace_path {str(path)!r} is not a file")
    ids: list[list[str]] = [[], [], [], []]
    rows: list[list[int]] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        _check_header(next(reader, []), path, minutes)
        for line, row in enumerate(reader, start=2):
            if len(row) != len(ID_COLUMNS) + minutes:
                raise AzureTraceError(f"{path}: row {line} has {len(row)} columns, expected {4 + minutes}")
            for k in range(4):
                ids[k].append(row[k])
            try:
                values = [int(v) for v in row[4:]]
            except ValueError:
                bad = next(i for i, v in enumerate(row[4:]) if not v.strip().lstrip("-").isdigit())
                raise AzureTraceError(f"{path}: row {line}, minute {bad + 1} is not an integer") from None
            if min(values, default=0) < 0:
                raise AzureTraceError(f"{path}: row {line} has a negative count")
            rows.append(values)
    counts = np.array(rows, dtype=np.int64).reshape(len(rows), minutes)
    return AzureCounts(tuple(ids[0]), tuple(ids[1]), tuple(ids[2]), tuple(ids[3]), counts)


def write_azure_counts(
    path: str | Path, ids: Iterable[tuple[str, str, str, str]], counts: np.ndarray
) -> Path:
    """Write (owner, app, function, trigger) rows with their per-minute counts [N, minutes] in the format."""
    counts = np.asarray(counts, dtype=np.int64)
    id_rows = list(ids)
    if counts.ndim != 2 or counts.shape[0] != len(id_rows):
        raise ValueError(f"counts must be [{len(id_rows)}, minutes], got {counts.shape}")
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*ID_COLUMNS, *(str(m) for m in range(1, counts.shape[1] + 1))])
        for idr, row in zip(id_rows, counts.tolist(), strict=True):
            writer.writerow([*idr, *row])
    return path
