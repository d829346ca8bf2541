"""Bounded load test of ``viewfinder serve`` on loopback: requests/s, p50/p99 latency and errors
for eager PyTorch without batching (``--max-batch 1``), with batching, and onnxruntime, at
several concurrencies; the server's RSS before and after; then it stops.

    python benchmarks/serve_load.py RUN [--images DIR] [--requests 2000] [--concurrency 1,8,32]
        [--modes eager-unbatched,eager-batched,onnx-batched] [--out results.json]

Each mode starts its own server process (``viewfinder serve RUN --port P ...``; ``onnx`` modes
export the run first with ``viewfinder export``), warms it up, then sends ``--requests`` uploads
per concurrency from one asyncio client (httpx), cycling through the images of ``--images``
(default: the run's test images). Client and server share the machine's cores, as they would on a
one-box deployment; the client is the same for every mode, so the ratios are fair. Traffic goes
to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

MODES = {
    "eager-unbatched": ["--runtime", "torch", "--max-batch", "1", "--max-wait-ms", "0"],
    "eager-batched": ["--runtime", "torch", "--max-batch", "32", "--max-wait-ms", "2"],
    "onnx-unbatched": ["--runtime", "onnx", "--max-batch", "1", "--max-wait-ms", "0"],
    "onnx-batched": ["--runtime", "onnx", "--max-batch", "32", "--max-wait-ms", "2"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def test_images(run: Path, folder: Path | None, limit: int = 64) -> list[bytes]:
    if folder is not None:
        kinds = (".png", ".jpg", ".jpeg")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in kinds)
    else:
        from viewfinder.api import Run
        from viewfinder.tasks import get_task_class

        cfg = Run(run).config
        task = get_task_class(cfg.task)(cfg, run)
        task.load()
        files = [Path(r.path) for r in task.split_records("test")]
    if not files:
        raise SystemExit("no images found: pass --images DIR")
    return [f.read_bytes() for f in files[:limit]]


def start_server(run: Path, mode: str, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "viewfinder", "serve", str(run), "--port", str(port)]
    server = subprocess.Popen(command + MODES[mode], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{mode}: the server stopped: {server.stderr.read().strip()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit(f"{mode}: the server did not come up in 120 s")


async def load(port: int, images: list[bytes], requests: int, concurrency: int) -> dict:
    url = f"http://127.0.0.1:{port}/v1/predict"
    latencies: list[float] = []
    errors = 0
    sent = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in sent:
            start = time.perf_counter()
            try:
                reply = await client.post(url, files={"image": ("x", images[i % len(images)])})
                ok = reply.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": errors,
        "requests_per_s": round(requests / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
    }


def export_onnx(run: Path) -> None:
    if not (run / "model.onnx").is_file():
        subprocess.run([sys.executable, "-m", "viewfinder", "export", str(run)], check=True)


def measure(run: Path, mode: str, images: list[bytes], args: argparse.Namespace) -> list[dict]:
    if mode.startswith("onnx"):
        export_onnx(run)
    port = free_port()
    server = start_server(run, mode, port)
    try:
        process = psutil.Process(server.pid)
        # warm-up at the highest concurrency: every batch size has run once, so RSS growth
        # after it is growth, not the first use of a larger batch
        asyncio.run(load(port, images, min(300, args.requests), max(args.concurrency)))
        rss_before = process.memory_info().rss
        rows = []
        for concurrency in args.concurrency:
            row = asyncio.run(load(port, images, args.requests, concurrency))
            row["rss_after_mb"] = round(process.memory_info().rss / 2**20, 1)
            rows.append({"mode": mode, **row, "rss_before_mb": round(rss_before / 2**20, 1)})
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def table(rows: list[dict]) -> str:
    head = (
        "| mode | concurrency | requests/s | p50 ms | p99 ms | errors "
        "| RSS after warm-up -> after this level, MB |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['requests_per_s']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['errors']} | {r['rss_before_mb']} -> {r['rss_after_mb']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--modes", default="eager-unbatched,eager-batched,onnx-batched")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    images = test_images(args.run, args.images)
    print(f"{cpu_name()}, {os.cpu_count()} cores; {len(images)} images; run {args.run}")
    rows = [row for mode in modes for row in measure(args.run, mode, images, args)]
    by = {(r["mode"], r["concurrency"]): r["requests_per_s"] for r in rows}
    top = max(args.concurrency)
    if ("eager-batched", top) in by and ("eager-unbatched", top) in by:
        ratio = by[("eager-batched", top)] / by[("eager-unbatched", top)]
        print(f"batching at concurrency {top}: {ratio:.2f}x the requests/s of unbatched serving")
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu_name(), "run": str(args.run), "rows": rows},
                                       indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
