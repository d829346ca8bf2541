"""Latency of a run's model (issue 13): eager PyTorch fp32, eager with the run's own numerics,
onnxruntime (the ``viewfinder export`` file, as ``serve --runtime onnx`` runs it) and
``torch.compile``, side by side in one run, at batch 1 (single image) and batch 8.

    python benchmarks/export_latency.py RUN [--repeats 100] [--batches 1,8] [--out /tmp/m.onnx]
        [--no-compile] [--quiet-load 1.0] [--max-wait 120]

Target: onnxruntime's single-image latency <= eager's. The model alone is timed (an input
tensor already normalised; decoding and resizing are the same for every runtime). This machine
is a shared VM whose speed drifts, so after warm-up the contenders alternate in blocks of
``BLOCK`` calls (one call each would time one runtime's idle threads fighting the next one's) and
the median and 90th percentile of ``--repeats`` calls are reported. Threads: PyTorch's default (one
per core) and onnxruntime's ``make_session`` (intra-op threads = cores, spinning between operators;
one row lets idle threads sleep instead, ``make_session(spinning=False)``), so every runtime uses
every core.
Prints a Markdown table; the export is written to ``--out`` (default: a temporary folder), never
into the run folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WARMUP = 10
BLOCK = 10  # calls in a row per contender: another runtime's idle threads settle first


def cpu_model() -> str:
    """The CPU's model name (lscpu, else /proc/cpuinfo) and its bf16 instructions."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        text = ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("Model name")), "")  # fmt: skip
    info = Path("/proc/cpuinfo")
    flags = info.read_text() if info.is_file() else ""
    if not name:
        name = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines()
                     if ln.startswith("model name")), platform.processor() or "?")  # fmt: skip
    native = [f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return f"{name} ({', '.join(native) or 'no native bf16'})"


def wait_for_quiet(limit: float, max_wait: float) -> float:
    """Wait until the 1-minute load average is below ``limit`` (others share this CPU), at most
    ``max_wait`` s; returns the load the measurement starts at."""
    start = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - start < max_wait:
        time.sleep(5)
    return os.getloadavg()[0]


def contenders(run: Path, onnx_path: Path, compile_model: bool) -> tuple[dict, dict[str, str]]:
    """name -> callable(x) for each runtime, and notes (numerics, compile time or why skipped)."""
    import torch

    from viewfinder.api import Run
    from viewfinder.export import OnnxModule, load_onnx_run, make_session
    from viewfinder.training.inference import load_trained
    from viewfinder.training.precision import autocast

    task, model, numerics, _ = load_trained(run, Run(run).config)
    model = model.float().to("cpu", memory_format=torch.contiguous_format).eval()
    onnx_model, metadata = load_onnx_run(onnx_path)  # as serve --runtime onnx loads it
    sleeping = OnnxModule(make_session(onnx_path, spinning=False), metadata)
    calls: dict[str, Callable[[Any], Any]] = {
        "eager fp32": model, "onnxruntime": onnx_model, "onnxruntime, idle threads sleep": sleeping,
    }  # fmt: skip
    notes = {"numerics": f"{numerics.precision}, channels_last={numerics.channels_last} "
                         f"({numerics.reason})"}  # fmt: skip
    if numerics.precision != "fp32" or numerics.channels_last:
        import copy

        own = copy.deepcopy(model)
        if numerics.channels_last:
            own = own.to(memory_format=torch.channels_last)

        def run_numerics(x: Any) -> Any:
            if numerics.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(torch.device("cpu"), numerics):
                return own(x)

        calls[f"eager, run's numerics ({numerics.precision})"] = run_numerics
    if compile_model:
        calls["torch.compile (fp32)"] = torch.compile(model, dynamic=False)
    return calls, notes


def measure(calls: dict, batch: int, size: int, repeats: int) -> tuple[dict, dict[str, str]]:
    """name -> list of seconds per call at ``batch``, contenders alternating; compile failures
    and first-call (compile) times as notes."""
    import torch

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    live = dict(calls)
    with torch.inference_mode():
        for name, fn in list(live.items()):
            start = time.perf_counter()
            try:
                for _ in range(WARMUP):
                    fn(x)
            except Exception as err:  # torch.compile needs a C++ toolchain; report, go on
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                notes[name] = f"skipped: {type(err).__name__}: {reason}"
                del live[name]
                continue
            if name.startswith("torch.compile"):
                notes[name] = (
                    f"batch {batch}: compile + warm-up {time.perf_counter() - start:.1f} s"
                )
            times[name] = []
        order = list(live)
        for r in range(-(-repeats // BLOCK)):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                for _ in range(min(BLOCK, repeats - len(times[name]))):
                    start = time.perf_counter()
                    live[name](x)
                    times[name].append(time.perf_counter() - start)
    return times, notes


def percentile(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, round(q * (len(ranked) - 1)))]


def table(results: dict[int, dict[str, list[float]]], names: list[str]) -> str:
    batches = sorted(results)
    head = ["runtime"]
    for b in batches:
        head += [f"batch {b} median ms", f"batch {b} p90 ms"]
    head += [f"batch {batches[-1]} images/s", "batch 1 vs eager fp32"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = statistics.median(results[batches[0]]["eager fp32"])
    for name in names:
        if any(name not in results[b] for b in batches):
            continue
        row = [name]
        for b in batches:
            values = results[b][name]
            row += [
                f"{statistics.median(values) * 1e3:.3f}",
                f"{percentile(values, 0.9) * 1e3:.3f}",
            ]
        last = statistics.median(results[batches[-1]][name])
        row += [
            f"{batches[-1] / last:.0f}",
            f"{statistics.median(results[batches[0]][name]) / base:.2f}x",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a classify or iqa run folder")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per contender")
    parser.add_argument("--batches", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--out", type=Path, help="where the ONNX file goes (default: temporary)")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    parser.add_argument("--quiet-load", type=float, default=1.0, help="start below this load")
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for it")
    args = parser.parse_args()

    import onnxruntime
    import torch

    from viewfinder.api import Run
    from viewfinder.export import export_onnx
    from viewfinder.export.onnx_runtime import cpu_cores

    cfg = Run(args.run).config
    began = time.perf_counter()
    load = wait_for_quiet(args.quiet_load, args.max_wait)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "model.onnx"
        exported = export_onnx(args.run, out, check_images=8)
        calls, notes = contenders(args.run, exported.path, not args.no_compile)
        results: dict[int, dict[str, list[float]]] = {}
        for batch in (int(b) for b in args.batches.split(",")):
            results[batch], more = measure(calls, batch, cfg.image_size, args.repeats)
            for name, note in more.items():
                notes[name] = f"{notes[name]}; {note}" if name in notes else note
    print(f"run: {args.run} ({cfg.task}, model {cfg.model.name}, {cfg.image_size} px)")
    print(f"CPU: {cpu_model()}; {cpu_cores()} cores; torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; onnxruntime {onnxruntime.__version__} with "
          f"{cpu_cores()} intra-op threads; load average at start {load:.2f}")  # fmt: skip
    print(exported.summary_lines()[1])
    for name, note in notes.items():
        print(f"{name}: {note}")
    print(f"\n{args.repeats} timed calls per contender and batch, after {WARMUP} warm-up calls:\n")
    print(table(results, list(calls)) + "\n")
    first = min(results)
    ort_ms = statistics.median(results[first]["onnxruntime"]) * 1e3
    for name in (n for n in results[first] if n.startswith("eager")):
        eager_ms = statistics.median(results[first][name]) * 1e3
        verdict = "met" if ort_ms <= eager_ms else "NOT met"
        print(f"target onnxruntime batch-{first} latency <= {name}: {verdict} "
              f"({ort_ms:.3f} ms vs {eager_ms:.3f} ms)")  # fmt: skip
    print(f"benchmark wall time {time.perf_counter() - began:.0f} s (load wait included)")


if __name__ == "__main__":
    main()
