"""The commands that share a run's results: ``export`` (ONNX), ``serve`` (HTTP API and page),
``report`` (one HTML file) and ``runs`` (the table of run folders). Registered on the app in
``cli.py``; heavy libraries are imported inside each command, so ``--help`` stays instant."""

from __future__ import annotations

from pathlib import Path

import typer

from viewfinder.errors import UserError


def export_command(
    run: Path = typer.Argument(..., help="Run folder (classify, iqa; caption/vqa: its encoder)."),
    fmt: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (default: RUN/model.onnx)."),
    check_images: int = typer.Option(
        8, "--check-images", help="Run images the file is checked on against PyTorch (0: noise)."
    ),
    opset: int = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's)."),
) -> None:
    """Export a run's model to ONNX (dynamic batch; preprocessing in its metadata), checked
    against PyTorch on the run's own images; `serve --runtime onnx` serves it."""
    from viewfinder.export import check_format, export_onnx

    check_format(fmt)
    result = export_onnx(run, out, opset=opset, check_images=check_images)
    for line in result.summary_lines():
        typer.echo(line)  # plain lines: paths must not be wrapped


def report(
    paths: list[Path] = typer.Argument(
        ..., help="Run, fold-set or sweep folders, or folders holding them.", metavar="PATH..."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="HTML file to write (default: ./report.html)."
    ),
) -> None:
    """One self-contained HTML report: comparison, curves and each run's views."""
    from viewfinder.report import build_report

    path, count = build_report(paths, out=out)
    typer.echo(f"report of {count} run{'s' if count != 1 else ''} written to {path}")


def serve(
    runs: list[str] = typer.Argument(
        ..., help="Run folders or fold sets; NAME=RUN names one.", metavar="RUN..."
    ),  # fmt: skip
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0: all)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    runtime: str = typer.Option("torch", "--runtime", help="torch, or onnx (viewfinder export)."),
    max_batch: int = typer.Option(16, "--max-batch", help="Images per forward pass at most."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="Wait for a batch to fill."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Request body limit."),
    max_pixels: int = typer.Option(100_000_000, "--max-pixels", help="Image size limit."),
    api_key: str = typer.Option(
        None, "--api-key", help="Require this key (X-API-Key header); default $VIEWFINDER_API_KEY."
    ),  # fmt: skip
    cors_origin: list[str] = typer.Option(None, "--cors-origin", help="Allow this web origin."),
) -> None:
    """An HTTP API and a web page for trained runs: POST /v1/predict, GET /v1/runs, GET /."""
    from viewfinder.serve.app import ServeSettings
    from viewfinder.serve.server import serve as run_server

    if max_batch < 1 or max_wait_ms < 0 or max_upload_mb <= 0 or max_pixels < 1:
        raise UserError("--max-batch, --max-upload-mb and --max-pixels must be positive, "
                        "--max-wait-ms not negative")  # fmt: skip
    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms,
                             max_upload_mb=max_upload_mb, max_pixels=max_pixels, api_key=api_key,
                             cors_origins=tuple(cors_origin or ()))  # fmt: skip
    run_server(runs, host=host, port=port, runtime=runtime, settings=settings)


def runs_command(
    directory: Path = typer.Argument(Path("runs"), help="Folder holding run folders."),
    task: str = typer.Option(None, "--task", help="Only this task."),
    status: str = typer.Option(None, "--status", help="completed, running, stopped, ..."),
    model: str = typer.Option(None, "--model", help="Model name containing this text."),
    since: float = typer.Option(None, "--since-hours", help="Created within these hours."),
    limit: int = typer.Option(None, "--limit", "-n", help="The newest N only."),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
) -> None:
    """Every run folder under DIR, newest first: task, model, status, best metric, time."""
    from viewfinder.experiments.runs import list_runs, rows_as_json

    rows = list_runs(directory, task=task, status=status, model=model, since_hours=since,
                     limit=limit)  # fmt: skip
    if as_json:
        typer.echo(rows_as_json(rows))
        return
    from rich.table import Table

    table = Table("created", "task", "model", "status", "monitor", "best", "epochs", "time",
                  f"run (in {directory})", box=None)  # fmt: skip
    for r in rows:
        best = f"{r.best:.4f}" if r.best is not None else "-"
        took = f"{r.seconds:.0f} s" if r.seconds else "-"
        where = str(Path(r.path).relative_to(directory)) if r.path != str(directory) else "."
        table.add_row(r.age, r.task, r.model, r.status, r.monitor or "-", best, r.epochs, took,
                      where)  # fmt: skip
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or logged: whole rows, not an 80-column squeeze
        console = Console(width=220)
    console.print(table if rows else f"no run folders under {directory}")
