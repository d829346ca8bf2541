"""Progress bars: items pass through unchanged; bars only where someone watches; sweep ETA."""

from __future__ import annotations

from viewfinder.experiments.sweep import sweep_progress
from viewfinder.progress import interactive, track


def test_track_passes_items_through_with_or_without_a_bar(monkeypatch, capsys):
    monkeypatch.setenv("VIEWFINDER_PROGRESS", "0")
    assert not interactive()
    assert list(track(iter(range(5)), 5, "x")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("VIEWFINDER_PROGRESS", "1")
    assert interactive()
    assert list(track(iter(range(5)), 5, "counting")) == [0, 1, 2, 3, 4]
    monkeypatch.delenv("VIEWFINDER_PROGRESS")
    assert not interactive()  # pytest captures output: not a terminal, so quiet (CI logs)


def test_sweep_progress_line_has_an_eta():
    assert sweep_progress(0, 4, 0.0, "cnn") == "sweep: run 1 of 4 (cnn)"
    line = sweep_progress(2, 4, 130.0, "resnet18")
    assert line == "sweep: run 3 of 4 (resnet18), 2 min 10 s so far, ~2 min 10 s left"
