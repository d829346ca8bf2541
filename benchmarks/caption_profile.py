"""Where an end-to-end captioner's training step goes (issue 11): ``torch.profiler``, 2 epochs.

    python benchmarks/caption_profile.py /work/shared/data/coco_captions/captions.csv /tmp/vf-prof

Trains the captions benchmark's end-to-end row (resnet18 + LSTM from scratch, 128 px, batch 32,
the numerics viewfinder picks: bf16 + channels_last on a CPU with bf16) for 5 epochs without
validation, profiles epochs 3 and 4 (after oneDNN has built its kernels) and prints each epoch's
time and images/s, then the ops by self CPU time. Results: docs/benchmarks.md (issue 11,
captions: "Where the end-to-end captioner's step goes").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from viewfinder.training.callbacks import Callback


class Profile(Callback):
    """Starts the profiler when epoch ``first`` starts, prints its table when ``last`` ends."""

    def __init__(self, first: int = 3, last: int = 4) -> None:
        self.first, self.last = first, last
        self.profiler: Any = None

    def on_epoch_start(self, epoch: int, total_steps: int) -> None:
        import torch

        if epoch == self.first:
            activities = [torch.profiler.ProfilerActivity.CPU]
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        print(f"epoch {record['epoch']}: {record['epoch_time']:.3f} s, "
              f"{record['images_per_second']:.1f} img/s", flush=True)  # fmt: skip
        if record["epoch"] == self.last and self.profiler is not None:
            self.profiler.stop()
            averages = self.profiler.key_averages()
            print(averages.table(sort_by="self_cpu_time_total", row_limit=35), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="captions CSV or COCO JSON")
    parser.add_argument("out", type=Path, help="output folder (the run)")
    args = parser.parse_args()
    import viewfinder

    start = time.perf_counter()
    viewfinder.train("caption", data=str(args.data), output_dir=str(args.out), name="profile",
                     progress=False, callbacks=[Profile()], model="resnet18", decoder="lstm",
                     image_size=128, epochs=5, learning_rate=1e-3, batch_size=32,
                     eval_every=100, decoding="greedy")  # fmt: skip
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
