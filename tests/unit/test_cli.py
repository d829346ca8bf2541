"""The command line, run as a user runs it: in a subprocess, from an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 120


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "100"})
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "viewfinder", *args]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-c", code], cwd)


@pytest.fixture(scope="module")
def slow_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.Popen[str]]:
    """The two commands that import torch and timm before failing, started side by side."""
    commands = {
        "data": ["train", "classify", "data=/nonexistent/fruits", "epochs=1", "-q"],
        "model": ["train", "classify", "data=X", "model=resnet19", "-q"],
    }
    started = {}
    for key, args in commands.items():
        cwd = tmp_path_factory.mktemp(f"cli_{key}")
        started[key] = subprocess.Popen(
            _command(*args),
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, out, err


def test_help(tmp_path: Path) -> None:
    result = _run(_command("--help"), tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "predict", "compare", "sweep", "demo", "config"):
        assert command in result.stdout


def test_config_keys(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("viewfinder")
    args = [str(script), "config", "keys"] if script.is_file() else _command("config", "keys")
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "train.learning_rate = 0.001" in lines
    assert "model.name = resnet18" in lines
    assert "data.path = None" in lines


def test_importing_the_cli_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys, viewfinder.cli\n"
        "heavy = [m for m in ('torch', 'timm', 'accelerate') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr


def test_help_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from viewfinder.cli import main\n"
        "sys.argv = ['viewfinder', 'train', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr


def test_unknown_key_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    result = _run(_command("train", "classify", "epochz=3"), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "epochz" in lines[0] and "epochs" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # failed before any work


def test_bad_value_is_one_line(tmp_path: Path) -> None:
    result = _run(_command("train", "classify", "data=x", "epochs=0"), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "train.epochs" in lines[0]


def test_missing_data_path_is_one_line(slow_errors: dict) -> None:
    code, _, err = _finish(slow_errors["data"])
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "/nonexistent/fruits" in lines[0]


def test_unknown_model_is_one_line(slow_errors: dict) -> None:
    code, _, err = _finish(slow_errors["model"])
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "resnet19" in lines[0]
    assert "resnet18" in lines[0]  # the suggestion
