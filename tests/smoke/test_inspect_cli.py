"""``viewfinder inspect`` as a user runs it, on the generated demo data of every task."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from viewfinder.cli import app
from viewfinder.data.demo import DemoPaths
from viewfinder.errors import UserError


def test_json_goes_to_stdout_and_files_to_out(demo_data: DemoPaths, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["inspect", str(demo_data.vqa), "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == "vqa" and summary["task_guessed"]
    assert summary["out_dir"] == str(out)
    assert summary["vqa"]["coverage"][-1][1] == 1.0
    for name in ("inspect.md", "inspect.json", *summary["plots"]):
        assert (out / name).is_file(), name


@pytest.mark.parametrize(
    ("part", "shown"),
    [
        ("classify", ["classify (guessed", "images per class", "imbalance"]),
        ("iqa", ["iqa+caption (guessed", "MOS min / median / max", "vocabulary"]),
        ("caption", ["caption (guessed", "captions per image"]),
        ("vqa", ["vqa (guessed", "answer types", "answer coverage"]),
    ],
)
def test_every_task_prints_tables_and_writes_next_to_the_user(
    demo_data: DemoPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part: str, shown: list
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "160")
    result = CliRunner().invoke(app, ["inspect", str(getattr(demo_data, part))])
    assert result.exit_code == 0, result.output
    for text in shown:
        assert text in result.output, text
    out = tmp_path / f"inspect-{part}"
    assert (out / "inspect.md").is_file() and (out / "image_sizes.png").is_file()
    assert f"inspect.md in inspect-{part}" in result.output


def test_task_and_sample_options(demo_data: DemoPaths, tmp_path: Path) -> None:
    args = ["inspect", str(demo_data.iqa), "--task", "iqa", "--sample", "5", "--json"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == "iqa" and summary["task_reason"] == "given with --task"
    assert summary["images"]["sizes"]["checked"] == 5 and summary["images"]["sizes"]["sampled"]
    assert "caption" not in summary


def test_user_mistakes_are_user_errors(demo_data: DemoPaths, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["inspect", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert isinstance(missing.exception, UserError) and "nope" in str(missing.exception)
    wrong = runner.invoke(app, ["inspect", str(demo_data.vqa), "--task", "captions"])
    assert isinstance(wrong.exception, UserError) and "'caption'" in str(wrong.exception)
    assert not (tmp_path / "o").exists()


def test_inspect_help_is_light(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from viewfinder.cli import main\n"
        "sys.argv = ['viewfinder', 'inspect', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'PIL', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--sample" in result.stdout and "--json" in result.stdout
