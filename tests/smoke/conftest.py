"""A tiny generated data set shared by the smoke tests (made once per session, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from viewfinder.data.demo import DemoPaths, generate_demo

# Small and fast: every smoke run trains 2 steps per epoch at 32 px.
FAST = {
    "image_size": 32,
    "batch_size": 8,
    "epochs": 2,
    "max_steps_per_epoch": 2,
    "num_workers": 0,
}


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    return generate_demo(tmp_path_factory.mktemp("demo") / "data", count=120, size=48)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"
