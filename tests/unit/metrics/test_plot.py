"""plot_confusion_matrix writes a readable PNG for small and large class counts."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from viewfinder.metrics.classification import plot_confusion_matrix

MATRIX = np.array([[3, 0, 0], [1, 1, 1], [0, 1, 1]], dtype=np.int64)
NAMES = ["cat", "dog", "fox"]


def assert_png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes every byte: catches a truncated file
        return image.size


def test_counts_png_is_written(tmp_path: Path) -> None:
    out = plot_confusion_matrix(MATRIX, NAMES, tmp_path / "cm.png", title="validation")
    assert out == tmp_path / "cm.png"
    width, height = assert_png(out)
    assert width >= 600 and height >= 600


def test_normalised_png_is_written_and_creates_folders(tmp_path: Path) -> None:
    out = plot_confusion_matrix(
        MATRIX, NAMES, str(tmp_path / "nested" / "cm_norm.png"), normalize=True
    )
    assert isinstance(out, Path)
    assert_png(out)


def test_row_without_samples_normalises_to_zero_not_nan(tmp_path: Path) -> None:
    matrix = np.array([[2, 1], [0, 0]])
    assert_png(plot_confusion_matrix(matrix, ["a", "b"], tmp_path / "cm.png", normalize=True))


def test_thirty_classes_grow_the_figure(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, size=(30, 30)) + np.diag(rng.integers(20, 200, size=30))
    names = [f"class_{i}" for i in range(29)] + ["a_rather_long_class_name_for_the_last_one"]
    small = assert_png(plot_confusion_matrix(MATRIX, NAMES, tmp_path / "small.png"))
    large_path = plot_confusion_matrix(matrix, names, tmp_path / "large.png")
    large = assert_png(large_path)
    assert large[0] > small[0] and large[1] > small[1]
    assert_png(plot_confusion_matrix(matrix, names, tmp_path / "large_norm.png", normalize=True))


def test_does_not_change_the_global_backend_or_leave_pyplot_figures(tmp_path: Path) -> None:
    backend = matplotlib.get_backend()
    plot_confusion_matrix(MATRIX, NAMES, tmp_path / "cm.png")
    assert matplotlib.get_backend() == backend
    pyplot = pytest.importorskip("matplotlib.pyplot")
    assert pyplot.get_fignums() == []


def test_bad_shapes_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(MATRIX, ["a", "b"], tmp_path / "cm.png")
