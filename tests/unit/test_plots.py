"""The A/B pictures are written as valid PNGs, and bad input is refused with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workflows import abstats, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _curves() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    steps = np.arange(1, 21) * 1024.0
    return {
        name: [
            np.column_stack([steps, rate * steps / 1000 + rng.normal(scale=5, size=steps.size)])
            for _ in range(3)
        ]
        for name, rate in (("zoo", 20.0), ("cleanrl", 12.0))
    }


def _check_png(path: Path, min_width: int = 300, min_height: int = 100) -> tuple[int, int]:
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        width, height = img.size
    assert width >= min_width and height >= min_height
    return width, height


def test_learning_curves_png(tmp_path: Path) -> None:
    out = plots.plot_learning_curves(_curves(), tmp_path / "sub" / "curves.png", reps=200, threshold=400)
    assert out == tmp_path / "sub" / "curves.png"
    _check_png(out)


def test_learning_curves_accept_seeds_of_different_lengths(tmp_path: Path) -> None:
    curves = _curves()
    curves["cleanrl"][0] = curves["cleanrl"][0][:7]  # a trial that stopped early
    curves["cleanrl"].append(np.zeros((0, 2)))  # and one that never evaluated
    _check_png(plots.plot_learning_curves(curves, tmp_path / "c.png", reps=100))


def test_performance_profile_png(tmp_path: Path) -> None:
    finals = {name: np.array([c[-1, 1] for c in cs]) for name, cs in _curves().items()}
    _check_png(plots.plot_performance_profile(finals, tmp_path / "profile.png", reps=200))
    multi = {
        "a": {"CartPole-v1": [0.9, 1.0], "Acrobot-v1": [0.5]},
        "b": {"CartPole-v1": [0.2], "Acrobot-v1": [0.7]},
    }
    _check_png(plots.plot_performance_profile(multi, tmp_path / "multi.png", taus=np.linspace(0, 1, 21)))


def test_probability_of_improvement_png_grows_a_row_per_pair(tmp_path: Path) -> None:
    scores = {"zoo": [480.0, 500.0, 470.0], "cleanrl": [300.0, 490.0, 420.0], "sb3": [200.0, 210.0, 190.0]}
    pairs = abstats.pairwise_improvements(scores, reps=200)
    _, h3 = _check_png(plots.plot_probability_of_improvement(pairs, tmp_path / "poi3.png"))
    one = {("zoo", "cleanrl"): (0.83, 0.61, 0.97)}  # plain tuples work as well
    _, h1 = _check_png(plots.plot_probability_of_improvement(one, tmp_path / "poi1.png", threshold=0.6))
    assert h3 > h1


def test_same_data_gives_the_same_bytes(tmp_path: Path) -> None:
    a = plots.plot_learning_curves(_curves(), tmp_path / "a.png", reps=100)
    b = plots.plot_learning_curves(_curves(), tmp_path / "b.png", reps=100)
    assert a.read_bytes() == b.read_bytes()


def test_empty_configs_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="learning curves: no configuration to draw"):
        plots.plot_learning_curves({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="performance profile: no configuration to draw"):
        plots.plot_performance_profile({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="probability of improvement: no configuration to draw"):
        plots.plot_probability_of_improvement({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"configuration\(s\) \['cleanrl'\] have no seed"):
        plots.plot_learning_curves({"zoo": _curves()["zoo"], "cleanrl": []}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no configuration has an evaluation"):
        plots.plot_learning_curves({"zoo": [np.zeros((0, 2))]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="has no run"):
        plots.plot_performance_profile({"zoo": []}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="not a probability interval"):
        plots.plot_probability_of_improvement({("a", "b"): (0.9, 0.95, 1.0)}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_matplotlib_loads_on_first_plot_only_and_never_pyplot(tmp_path: Path) -> None:
    # Importing the module (as the CLI and finalize will) costs nothing; drawing uses bare Agg Figures,
    # never pyplot, whose global figure manager is not thread-safe and may pick an interactive backend.
    png = str(tmp_path / "p.png")
    code = (
        "import sys; from workflows import plots; before = 'matplotlib' in sys.modules; "
        f"plots.plot_probability_of_improvement({{('a', 'b'): (0.5, 0.2, 0.8)}}, {png!r}); "
        "print(before, 'matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "True", "False"]
    _check_png(tmp_path / "p.png")
