"""Answers for visual question answering: the official normalisation, answer and question types,
and the answer vocabulary a classifier-style VQA head predicts over.

``normalize_answer`` is a faithful port of the official VQA evaluation's answer processing
(GT-Vision-Lab/VQA, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``: ``processPunctuation``
then ``processDigitArticle``), quirks included, so accuracies here match the published ones:

- ``'\\n'`` and ``'\\t'`` become spaces and the ends are stripped;
- each mark of ``PUNCTUATION`` is deleted when it touches a space (or the text has a digit-comma-
  digit, as in ``1,000``), else replaced by a space (``t-shirt`` -> ``t shirt``); the apostrophe,
  colon and period are not in that list;
- a period not followed by a digit is deleted (``yes.`` -> ``yes``, ``3.5`` stays). The official
  regex ``(?!<=\\d)(\\.)(?!\\d)`` was meant as a look-behind but is a look-ahead that always holds,
  and it passes ``re.UNICODE`` (32) where ``re.sub`` takes ``count``: at most 32 periods go;
- lower-cased, split on whitespace, number words ``none``/``zero``..``ten`` become digits (so
  ``none`` -> ``0``), the articles a/an/the are dropped, missing apostrophes are restored from the
  contractions table (``isnt`` -> ``isn't``; its capitalised keys never match after lower-casing,
  as in the original), and the words are joined by single spaces.

Nothing here imports torch: the vocabulary is built and saved (``answers.json``) before training.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from viewfinder.errors import UserError

ANSWER_TYPES = ("yes/no", "number", "other")
# vqaEval.py's punct list, in its order (the order matters: each mark sees the earlier edits)
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!")  # fmt: skip
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: see the module doc
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                 "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
                 "ten": "10"}  # fmt: skip
_ARTICLES = ("a", "an", "the")
_NUMBER = re.compile(r"\d*\.?\d+")
_QUESTION_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


def _process_punctuation(text: str) -> str:
    """vqaEval.py's ``processPunctuation``: the tests read the input, the edits the output."""
    out = text
    drop_all = _COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if drop_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=32)  # the official call passes re.UNICODE (32) here


def _process_digit_article(text: str) -> str:
    """vqaEval.py's ``processDigitArticle``: number words to digits, no articles, apostrophes."""
    kept = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    kept = [w for w in kept if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in kept)


@functools.lru_cache(maxsize=65536)
def normalize_answer(text: str) -> str:
    """The official VQA answer normalisation (see the module doc); cached because answers repeat
    (a handful of distinct strings make up most of any VQA set)."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def answer_type(answer: str) -> str:
    """``yes/no``, ``number`` (digits, maybe a decimal) or ``other``, read from the (normalised)
    answer itself: user data sets rarely carry VQA's annotated answer types."""
    answer = normalize_answer(answer)
    if answer in ("yes", "no"):
        return "yes/no"
    return "number" if _NUMBER.fullmatch(answer) else "other"


def question_type(question: str, words: int = 2) -> str:
    """The question's first ``words`` words, lower-cased, punctuation dropped ("" when it has none).

    VQA groups questions by 65 fixed prefixes of one to five words ("what color is the", "how
    many", "is there a"); a user's questions have no such list, and two words ("what color",
    "how many", "is there") group them about as well while keeping every group large enough to
    read an accuracy from.
    """
    if words < 1:
        raise UserError(f"words={words}: a question type needs at least 1 word")
    return " ".join(_QUESTION_WORD.findall(question.lower())[:words])


def most_common_answer(answers: Sequence[str]) -> str:
    """The answer given most often; ties go to the one listed first ("" for no answers)."""
    return Counter(answers).most_common(1)[0][0] if answers else ""


class AnswerVocab:
    """The answers a VQA classifier chooses from: the ``top_k`` most frequent normalised training
    answers (every annotator's answer counts once; ties alphabetical), index = position.

    Answers passed to ``index``/``soft_target``/``coverage`` are normalised first, so raw and
    normalised text look up the same entry.
    """

    def __init__(self, answers: Iterable[str]) -> None:
        self.answers: list[str] = list(answers)
        self._index = {a: i for i, a in enumerate(self.answers)}

    @classmethod
    def build(cls, answer_lists: Iterable[Sequence[str]], top_k: int | None = 3000) -> AnswerVocab:
        """From training answers (one sequence per question); ``top_k=None`` keeps them all."""
        if top_k is not None and top_k < 1:
            raise UserError(f"top_k={top_k}: the answer vocabulary needs at least 1 answer")
        ranked = _ranked_answers(answer_lists)
        if not ranked:
            raise UserError("no answers to build an answer vocabulary from (are they empty?)")
        return cls(ranked[:top_k])

    def __len__(self) -> int:
        return len(self.answers)

    def index(self, answer: str) -> int | None:
        """The answer's position, or None when it is not in the vocabulary."""
        return self._index.get(normalize_answer(answer))

    def soft_target(self, answers: Sequence[str]) -> dict[int, float]:
        """VQA soft scores of a question's in-vocabulary answers: min(count / 3, 1) with three or
        more answers (the accuracy's "three humans agree" rule); with one or two answers each gets
        its share, count / n, so a lone answer is a hard 1.0 target."""
        counts = Counter(normalize_answer(a) for a in answers)
        n = len(answers)
        target = {}
        for answer, count in counts.items():
            index = self._index.get(answer)
            if index is not None:
                target[index] = min(count / 3, 1.0) if n >= 3 else count / n
        return target

    def coverage(self, answer_lists: Iterable[Sequence[str]]) -> float:
        """Share of (labelled) questions whose most common answer the vocabulary holds: the best
        exact-match accuracy a classifier over it can reach."""
        tops = _top_answers(answer_lists)
        return sum(a in self._index for a in tops) / len(tops) if tops else 0.0

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"answers": self.answers}, indent=0))

    @classmethod
    def load(cls, path: Path) -> AnswerVocab:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: answer vocabulary missing (was the run trained for vqa?)")
        try:
            return cls(json.loads(path.read_text())["answers"])
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"{path}: not an answer vocabulary ({error}); retrain to rewrite it"
            ) from error


def top_k_coverage(
    answer_lists: Iterable[Sequence[str]], ks: Iterable[int]
) -> list[tuple[int, float]]:
    """(k, coverage of the top-k vocabulary) for each k: the curve that shows how many answers a
    head needs (``inspect``); the answers are ranked once, as ``AnswerVocab.build`` ranks them."""
    answer_lists = [list(a) for a in answer_lists]
    rank = {a: i for i, a in enumerate(_ranked_answers(answer_lists))}
    tops = [rank.get(a, len(rank)) for a in _top_answers(answer_lists)]
    return [(k, sum(r < k for r in tops) / len(tops) if tops else 0.0) for k in ks]


def _ranked_answers(answer_lists: Iterable[Sequence[str]]) -> list[str]:
    """Every distinct normalised answer, most frequent first, ties alphabetical."""
    counts = Counter(normalize_answer(a) for answers in answer_lists for a in answers)
    counts.pop("", None)  # an answer of only punctuation or articles is no answer
    return sorted(counts, key=lambda a: (-counts[a], a))


def _top_answers(answer_lists: Iterable[Sequence[str]]) -> list[str]:
    """The most common normalised answer of each question that has answers."""
    return [most_common_answer([normalize_answer(a) for a in answers])
            for answers in answer_lists if answers]  # fmt: skip


# vqaEval.py's contractions table, verbatim (including its "somebody'd" -> "somebodyd" entry)
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip
