"""Session-wide test settings: the image cache lives in a temporary folder, never in ~/.cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["VIEWFINDER_CACHE_DIR"] = str(tmp_path_factory.mktemp("vf-cache"))
