"""The Azure Functions 2019 per-minute invocation files: read, aggregated per app, replayed as arrivals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ftg_common.envs.coldstart.azure_trace import (
    ID_COLUMNS,
    MINUTES,
    AzureTraceError,
    load_azure_counts,
    write_azure_counts,
)
from ftg_common.envs.coldstart.trace import arrivals_from_counts

IDS = [
    ("o1", "appA", "f1", "http"),
    ("o1", "appA", "f2", "queue"),
    ("o2", "appB", "f3", "timer"),
]


def _header() -> str:
    return ",".join([*ID_COLUMNS, *(str(m) for m in range(1, MINUTES + 1))])


def _counts() -> np.ndarray:
    counts = np.zeros((3, MINUTES), dtype=np.int64)
    counts[0, 0], counts[0, 1439] = 3, 7
    counts[1, 0] = 2
    counts[2, ::60] = 1  # a timer: once an hour
    return counts


@pytest.fixture
def day(tmp_path: Path) -> Path:
    # Written by hand in the dataset's layout (not by the module's writer), as the public file is.
    lines = [_header()]
    for ids, row in zip(IDS, _counts().tolist(), strict=True):
        lines.append(",".join([*ids, *map(str, row)]))
    path = tmp_path / "invocations_per_function_md.anon.d01.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_day_file_is_read_row_by_row(day: Path) -> None:
    table = load_azure_counts(day)
    assert len(table) == 3 and table.counts.shape == (3, MINUTES) and table.counts.dtype == np.int64
    assert table.functions == ("f1", "f2", "f3") and table.triggers == ("http", "queue", "timer")
    assert np.array_equal(table.counts, _counts())


def test_counts_sum_per_app(day: Path) -> None:
    apps = load_azure_counts(day).by_app()
    assert apps.apps == ("appA", "appB") and apps.owners == ("o1", "o2")
    assert apps.counts[0, 0] == 5 and apps.counts[0, 1439] == 7 and apps.counts[1].sum() == 24


def test_the_writer_round_trips(day: Path, tmp_path: Path) -> None:
    table = load_azure_counts(day)
    ids = list(zip(table.owners, table.apps, table.functions, table.triggers, strict=True))
    again = load_azure_counts(write_azure_counts(tmp_path / "copy.csv", ids, table.counts))
    assert np.array_equal(again.counts, table.counts)
    assert (again.owners, again.apps, again.functions, again.triggers) == tuple(zip(*IDS, strict=True))
    assert (tmp_path / "copy.csv").read_text().splitlines()[0] == day.read_text().splitlines()[0]


def test_per_minute_counts_become_arrivals_within_their_minute() -> None:
    counts = np.array([3, 0, 2, 0])
    a = arrivals_from_counts(counts, np.random.default_rng(0))
    assert a.size == 5 and np.all(np.diff(a) >= 0)
    assert np.histogram(a, bins=[0, 60, 120, 180, 240])[0].tolist() == [3, 0, 2, 0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lines: ["HashOwner,HashApp,Function,Trigger" + lines[0][35:], *lines[1:]], "header column 3"),
        (lambda lines: [lines[0], lines[1] + ",9", *lines[2:]], "row 2 has 1445 columns"),
        (lambda lines: [lines[0], lines[1], lines[2].replace(",2,", ",x,", 1), lines[3]], "row 3, minute 1"),
        (
            lambda lines: [lines[0], lines[1], lines[2], lines[3].replace(",1,", ",-1,", 1)],
            "row 4 has a negative",
        ),
    ],
)
def test_a_malformed_file_is_refused_naming_row_and_column(day: Path, mutate: object, message: str) -> None:
    lines = day.read_text().splitlines()
    day.write_text("\n".join(mutate(lines)) + "\n")  # type: ignore[operator]
    with pytest.raises(AzureTraceError, match=message):
        load_azure_counts(day)


def test_a_missing_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(AzureTraceError, match="trace_path"):
        load_azure_counts(tmp_path / "nope.csv")
