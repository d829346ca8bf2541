"""viewfinder: train, compare, evaluate and submit image models on your own data.

The API is imported lazily (``viewfinder.train`` etc.), so importing the package is instant and
``viewfinder --help`` never loads torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "Run", "compare", "demo", "evaluate", "load_run", "predict", "resume", "sweep", "train",
    "zero_shot",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name == "demo":
        from viewfinder.demo import run_demo

        return run_demo
    if name in __all__:
        from viewfinder import api

        return getattr(api, name)
    raise AttributeError(f"module 'viewfinder' has no attribute {name!r}")
