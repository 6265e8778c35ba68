"""A benchmark run from a ``git archive`` snapshot names the commit it measured."""

from __future__ import annotations

import importlib
import io
import subprocess
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def results_io(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The benchmark scripts import their siblings by name, with benchmarks/ on the path.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("results_io")


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_git_archive_snapshot_names_its_commit(tmp_path: Path, results_io: ModuleType) -> None:
    # A repository laid out as this one is: the placeholder file and its export-subst attribute.
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    for name in (".gitattributes", str(results_io.ARCHIVE_REVISION)):
        (repo / name).write_text((ROOT / name).read_text())
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "snapshot me")
    head = _git(repo, "rev-parse", "--short", "HEAD")
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=repo, capture_output=True, check=True).stdout
    snapshot = tmp_path / "snapshot"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(snapshot, filter="data")
    assert results_io.git_revision(snapshot) == f"{head} (a git archive snapshot)"
    assert results_io.git_revision(repo) == head  # the checkout itself: its HEAD, as before


def test_a_folder_that_is_no_snapshot_says_so(tmp_path: Path, results_io: ModuleType) -> None:
    assert results_io.git_revision(tmp_path) == "not a git checkout"
    placeholder = tmp_path / results_io.ARCHIVE_REVISION  # a checkout's copy: never substituted
    placeholder.parent.mkdir()
    placeholder.write_text((ROOT / results_io.ARCHIVE_REVISION).read_text())
    assert results_io.git_revision(tmp_path) == "not a git checkout"
