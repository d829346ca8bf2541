"""Caption metrics over a whole evaluated set, computed by pycocoevalcap exactly as COCO (and the
camera image-quality challenge) score them, and the challenge's caption score:

    caption_score = 4 * CIDEr-D + 3 * METEOR + 2 * (BLEU-4 + BLEU-3) / 2 + 1 * ROUGE-L

- Tokenisation: the PTB tokenizer (Stanford CoreNLP, Java) that COCO uses: lower-case, punctuation
  removed. pycocoevalcap's ``Cider`` *is* CIDEr-D (COCO's variant: Gaussian length penalty,
  clipped counts, sigma 6, x10), with document frequencies from the evaluated references: the
  score belongs to the whole set (LAVIS scores in ``after_evaluation`` for the same reason).
- METEOR 1.5 runs as a Java process too (one per Python process, kept: ``shared_meteor``).
  Without a Java runtime (``java`` on PATH) both need a stand-in: a Python tokenizer that
  removes PTB's punctuation list, no METEOR, ``caption_score`` is None and ``java_free`` is 1.0:
  the numbers are then close to, not equal to, the challenge's (a one-line warning says so).
- ``distinct_captions``: the share of different generated captions (degenerate decoding, such as
  one caption for every image, shows here first).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

# what COCO's PTB tokenizer script drops after tokenising (pycocoevalcap/tokenizer)
PUNCTUATION = ("''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
               "-", "--", "...", ";")  # fmt: skip
METRIC_NAMES = ("caption_score", "cider_d", "meteor", "bleu_1", "bleu_2", "bleu_3", "bleu_4",
                "rouge_l", "distinct_captions", "java_free")  # fmt: skip


def caption_score(
    cider_d: float, meteor: float, bleu_4: float, bleu_3: float, rouge_l: float
) -> float:
    """The challenge's weighted sum (see the module doc)."""
    return 4 * cider_d + 3 * meteor + 2 * (bleu_4 + bleu_3) / 2 + rouge_l


def java_available() -> bool:
    """pycocoevalcap starts ``java`` from PATH (for the PTB tokenizer and METEOR)."""
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """The Java-free stand-in for the PTB tokenizer: lower-case, split off punctuation, drop it."""
    spaced = re.sub(r"([.,!?;:()\[\]{}\"`]|'s\b|n't\b|--|-)", r" \1 ", text.lower())
    return " ".join(t for t in spaced.split() if t not in PUNCTUATION and t not in '()[]{}"')


def _tokenize(captions: Mapping[str, Sequence[str]], java: bool) -> dict[str, list[str]]:
    if not java:
        return {k: [simple_tokenize(c) for c in v] for k, v in captions.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    wrapped = {k: [{"caption": c} for c in v] for k, v in captions.items()}
    with contextlib.redirect_stdout(io.StringIO()), _quiet_stderr():  # Java says a line a call
        return PTBTokenizer().tokenize(wrapped)


# Tokenized references of the last few scored sets. Validation scores the same references every
# epoch, and each PTB tokenizer call starts a Java process (~0.3 s, measured): caching them and
# tokenizing the rest in one call makes a validation start one process instead of two.
_TOKENIZED_REFERENCES: dict[tuple, dict[str, list[str]]] = {}
_KEEP_REFERENCE_SETS = 4


def _tokenize_pair(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str], java: bool
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(tokenized references, tokenized predictions), as ``_tokenize`` gives each: the same
    tokens, from at most one tokenizer call."""
    res_in = {k: [v] for k, v in predictions.items()}
    if not java:
        return _tokenize(references, java), _tokenize(res_in, java)
    key = tuple((k, tuple(v)) for k, v in references.items())
    gts = _TOKENIZED_REFERENCES.get(key)
    if gts is not None:
        return gts, _tokenize(res_in, java)
    both = _tokenize({**{("ref", k): v for k, v in references.items()},
                      **{("res", k): v for k, v in res_in.items()}}, java)  # fmt: skip
    gts = {k: both.get(("ref", k), []) for k in references}
    res = {k: both.get(("res", k), []) for k in res_in}
    while len(_TOKENIZED_REFERENCES) >= _KEEP_REFERENCE_SETS:
        del _TOKENIZED_REFERENCES[next(iter(_TOKENIZED_REFERENCES))]
    _TOKENIZED_REFERENCES[key] = gts
    return gts, res


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (where the tokenizer's Java process writes) to /dev/null."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.lru_cache(maxsize=1)
def shared_meteor() -> Any:
    """One METEOR 1.5 Java process per Python process: it spends ~7-10 s loading its paraphrase
    tables once, then scores a set in ~0.1 s (measured), so validating every epoch stays cheap.
    Creating it early (``warm_up_meteor``) lets Java load while the first epoch trains."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def warm_up_meteor() -> None:
    """Start the shared METEOR process now when Java is there (see ``shared_meteor``)."""
    if java_available():
        shared_meteor()


def _java_free_scores(
    gts: Mapping[str, list[str]], res: Mapping[str, list[str]]
) -> dict[str, float | None]:
    """BLEU-1..4, CIDEr-D and ROUGE-L of tokenized captions (pycocoevalcap's scorers)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    scores: dict[str, float | None] = {f"bleu_{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores.update(cider_d=float(cider), rouge_l=float(rouge))
    return scores


def score_captions(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    *,
    java: bool | None = None,
) -> dict[str, float | None]:
    """Every metric of ``METRIC_NAMES`` for one generated caption per image (same keys as
    ``references``, which hold one or more human captions each)."""
    missing = sorted(set(references) ^ set(predictions))
    if missing:
        raise ValueError(f"references and predictions differ in images, e.g. {missing[0]!r}")
    if not predictions:
        raise ValueError("no captions to score")
    java = java_available() if java is None else java
    if not java:
        warnings.warn("no Java runtime: captions scored without METEOR and with a Python "
                      "tokenizer (java_free=1); install Java 17 for the challenge's exact scores",
                      stacklevel=2)  # fmt: skip
    gts, res = _tokenize_pair(references, predictions, java)
    scores: dict[str, float | None] = _java_free_scores(gts, res)
    scores.update(meteor=None, caption_score=None)
    if java:
        scores["meteor"] = float(shared_meteor().compute_score(gts, res)[0])
        scores["caption_score"] = caption_score(scores["cider_d"], scores["meteor"],
                                                scores["bleu_4"], scores["bleu_3"],
                                                scores["rouge_l"])  # fmt: skip
    scores["distinct_captions"] = len(set(predictions.values())) / len(predictions)
    scores["java_free"] = 0.0 if java else 1.0
    return {name: scores[name] for name in METRIC_NAMES}


def _gather(items: list) -> list:
    """Every process's items (multi-GPU evaluation); the list itself in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    gathered: list[list] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


class CaptionMetrics:
    """Collects generated captions and their references over a whole evaluated set, then scores
    them at once (CIDEr-D's document frequencies come from the whole set).

    ``outputs`` are generated ids (B, L), decoded by ``decode``; ``batch["references"]`` holds
    each image's human captions and ``batch["index"]`` its position. Images without references
    are kept (``captions``) but not scored.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], java: bool | None = None) -> None:
        self.decode, self.java = decode, java
        self.items: list[tuple[int, str, list[str]]] = []

    def to(self, device: object) -> CaptionMetrics:
        return self

    def update(self, outputs: object, batch: Mapping[str, object]) -> None:
        ids = outputs.tolist()  # type: ignore[attr-defined]
        indices = [int(i) for i in batch["index"]]  # type: ignore[attr-defined]
        for index, seq, refs in zip(indices, ids, batch["references"], strict=True):  # type: ignore[arg-type]
            self.items.append((index, self.decode(seq), list(refs)))

    def captions(self) -> list[tuple[int, str, list[str]]]:
        """(position, generated, references) of every image seen, all processes, in order."""
        return sorted(_gather(self.items))

    def compute(self) -> dict[str, float | None]:
        """Every metric of ``METRIC_NAMES``; without Java, METEOR and the caption score are None."""
        items = [(str(i), c, r) for i, c, r in self.captions() if r]
        if not items:
            return dict.fromkeys(METRIC_NAMES, 0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # said once by the task, not every validation
            scores = score_captions({i: r for i, _, r in items}, {i: c for i, c, _ in items},
                                    java=self.java)  # fmt: skip
        return scores


def plot_caption_grid(
    items: Sequence[tuple[str, str, Sequence[str]]], path: object, *, columns: int = 4
) -> None:
    """Images with the generated caption (bold) and the first reference under each: the
    ``evaluate`` view a person reads to judge captions. ``items``: (image path, generated,
    references)."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    rows = max(1, -(-len(items) // columns))
    fig = Figure(figsize=(4 * columns, 4.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image_path, generated, references) in zip(axes.flat, items, strict=False):
        with Image.open(image_path) as image:
            ax.imshow(image.convert("RGB"))
        reference = references[0] if references else "(no reference)"
        text = (
            textwrap.fill(f"model: {generated}", 44)
            + "\n"
            + textwrap.fill(f"human: {reference}", 44)
        )
        ax.set_title(text, fontsize=8, loc="left")
    fig.savefig(path, dpi=80)


def constant_caption_floor(
    candidates: Sequence[str],
    references: Mapping[str, Sequence[str]],
    *,
    java: bool | None = None,
    most: int | None = None,
) -> tuple[str, dict[str, float | None]]:
    """The floor a captioner must beat: the single training caption that, given to every image,
    scores best. Candidates (every distinct one, or the ``most`` most frequent: only useful when
    captions repeat, as templated ones do) are ranked by a Java-free proxy (the caption score
    without METEOR), then the winner is scored exactly; returns (caption, scores)."""
    from collections import Counter

    ranked = [c for c, _ in Counter(c.strip() for c in candidates if c.strip()).most_common(most)]
    if not ranked:
        raise ValueError("no candidate captions")

    gts = _tokenize(references, java=False)  # once for all candidates

    def proxy(caption: str) -> float:
        s = _java_free_scores(gts, dict.fromkeys(gts, [simple_tokenize(caption)]))
        return 4 * s["cider_d"] + s["bleu_4"] + s["bleu_3"] + s["rouge_l"]  # type: ignore[operator]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = max(ranked, key=proxy)
        return best, score_captions(references, dict.fromkeys(references, best), java=java)
