"""viewfinder's own output folders, marked so that no reader ever takes them for data.

``data=.`` with the default ``output_dir=runs`` puts the run folders inside the data; so can a
``cache_dir`` or an ``evaluate --out``. Every such root gets the marker file ``.viewfinder-output``;
run folders and output written before the marker existed are recognised by their files.
"""

from __future__ import annotations

from pathlib import Path

OUTPUT_MARKER = ".viewfinder-output"
_RUN_FOLDER_FILES = ("summary.json", "labels.json", "metrics.jsonl", "folds.json")


def mark_output_folder(folder: Path) -> Path:
    """Create ``folder`` and tag it as viewfinder output, so no reader takes it for data."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("Written by viewfinder: readers never take this folder for data.\n")
    return folder


def _is_run_folder(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and any(
        (folder / name).is_file() for name in _RUN_FOLDER_FILES
    )


def is_output_folder(folder: Path) -> bool:
    """Whether ``folder`` is viewfinder's output (see the module doc), not a user's data."""
    if (folder / OUTPUT_MARKER).exists() or _is_run_folder(folder):
        return True
    if any((folder / "images").glob("rgb-resize*")):  # an image cache from before the marker
        return True
    nested = (*folder.glob("*/*"), *folder.glob("sweeps/*/*/*"))
    return any(p.is_dir() and _is_run_folder(p) for p in nested)
