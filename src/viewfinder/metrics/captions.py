"""Caption metrics over a whole evaluated set, computed by pycocoevalcap exactly as COCO (and the
camera image-quality challenge) score them, and the challenge's caption score:

    caption_score = 4 * CIDEr-D + 3 * METEOR + 2 * (BLEU-4 + BLEU-3) / 2 + 1 * ROUGE-L

- Tokenisation: the PTB tokenizer (Stanford CoreNLP, Java) that COCO uses: lower-case, punctuation
  removed. pycocoevalcap's ``Cider`` *is* CIDEr-D (COCO's variant: Gaussian length penalty,
  clipped counts, sigma 6, x10), with document frequencies from the evaluated references: the
  score belongs to the whole set (LAVIS scores in ``after_evaluation`` for the same reason).
- METEOR 1.5 runs as a Java process too. Without a Java runtime (``java`` on PATH) both need
  a stand-in: a Python tokenizer that removes PTB's punctuation list,
  no METEOR, ``caption_score`` is None and ``java_free`` is 1.0: the numbers are then close to,
  not equal to, the challenge's (a one-line warning says so).
- ``distinct_captions``: the share of different generated captions (degenerate decoding, such as
  one caption for every image, shows here first).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import warnings
from collections.abc import Mapping, Sequence

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
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per call
        return PTBTokenizer().tokenize(wrapped)


def score_captions(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    *,
    java: bool | None = None,
) -> dict[str, float | None]:
    """Every metric of ``METRIC_NAMES`` for one generated caption per image (same keys as
    ``references``, which hold one or more human captions each)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

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
    gts = _tokenize(references, java)
    res = _tokenize({k: [v] for k, v in predictions.items()}, java)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    scores: dict[str, float | None] = {f"bleu_{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores.update(cider_d=float(cider), rouge_l=float(rouge), meteor=None, caption_score=None)
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        scores["meteor"] = float(Meteor().compute_score(gts, res)[0])  # its __del__ ends Java
        scores["caption_score"] = caption_score(scores["cider_d"], scores["meteor"],
                                                scores["bleu_4"], scores["bleu_3"],
                                                scores["rouge_l"])  # fmt: skip
    scores["distinct_captions"] = len(set(predictions.values())) / len(predictions)
    scores["java_free"] = 0.0 if java else 1.0
    return {name: scores[name] for name in METRIC_NAMES}
