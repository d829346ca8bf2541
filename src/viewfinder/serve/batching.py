"""Dynamic batching: concurrent requests to one model run as one forward pass.

A request announces itself when it arrives (``arriving``, before its upload is decoded), then
puts its decoded image on the run's queue and awaits a future. One consumer per run takes
whatever is waiting and, while other requests are still being decoded, waits at most
``max_wait_ms`` for them, up to ``max_batch`` images; with nobody else arriving it runs at once,
so a lone client pays no batching delay. While a batch runs, new requests queue up, so under
load batches fill by themselves. ``max_batch=1`` is unbatched serving (the baseline of
``benchmarks/serve_load.py``).

Batches run on one dedicated thread per run, never on the event loop (which keeps accepting
uploads) and never on changing pool threads: PyTorch's OpenMP pool belongs to the calling
thread, so a new caller thread means a new team of spinning workers competing for the cores
(measured: 23 ms vs ~8 ms per resnet18 image; docs/benchmarks.md).

A batch that fails (any exception) fails its own requests with that one-line message and the
consumer goes on: one bad request never takes the worker down.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass
class Pending:
    image: Any
    fields: dict[str, str]
    future: asyncio.Future
    queued: float


class Batcher:
    """Collects requests for one ``ServedRun`` into batches; see the module doc."""

    def __init__(self, served: Any, *, max_batch: int = 16, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.served, self.max_batch, self.max_wait = served, max_batch, max_wait_ms / 1000
        self._queue: asyncio.Queue[Pending] | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="viewfinder-infer",
                                          initializer=_inference_thread)  # fmt: skip
        self.arriving = 0  # requests being read and decoded: worth waiting for
        self.batches, self.images = 0, 0  # served so far (the /health figures)

    def _start(self) -> asyncio.Queue[Pending]:
        """Start the consumer on the running loop (lazily: test clients run their own loops)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._consume())
        return self._queue

    def announce(self) -> None:
        """A request has arrived; ``submit`` (or ``withdraw`` on a bad upload) follows."""
        self.arriving += 1

    def withdraw(self) -> None:
        self.arriving = max(0, self.arriving - 1)

    async def submit(self, image: Any, fields: dict[str, str]) -> tuple[dict, dict[str, float]]:
        """The postprocess row of one image, and its timing (queue and batch milliseconds)."""
        queue = self._start()
        future = asyncio.get_running_loop().create_future()
        self.withdraw()
        await queue.put(Pending(image, fields, future, time.perf_counter()))
        return await future

    async def _consume(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or not self.arriving:  # nobody else is on the way: run now
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            await self._run(batch)

    async def _run(self, batch: list[Pending]) -> None:
        started = time.perf_counter()
        try:
            rows = await asyncio.get_running_loop().run_in_executor(
                self._thread, self.served.predict, [p.image for p in batch],
                [p.fields for p in batch],
            )  # fmt: skip
        except Exception as error:  # reported to each request of the batch; the worker goes on
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        inference = (time.perf_counter() - started) * 1000
        self.batches, self.images = self.batches + 1, self.images + len(batch)
        for pending, row in zip(batch, rows, strict=True):
            timing = {
                "queue": (started - pending.queued) * 1000,
                "inference": inference,
                "batch_size": len(batch),
            }
            if not pending.future.done():  # a client that went away leaves a cancelled future
                pending.future.set_result((row, timing))


def _inference_thread() -> None:
    """The inference thread keeps autocast's cast weights for its whole life: entered here,
    never left (``training/precision.py keep_cast_weights``)."""
    from viewfinder.training.precision import keep_cast_weights

    keep_cast_weights().__enter__()
