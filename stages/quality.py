"""Model-based quality, GPT-3 style (Brown et al. 2020, appendix A).

A fastText classifier trained on reference text (books, Wikipedia) against raw
crawl text gives ``quality_score`` = P(reference). Documents are kept either
above a threshold, or by GPT-3's Pareto rule: keep when
``pareto(alpha) > 1 - score`` with alpha = 9, which keeps mostly high scores
and some low ones, for diversity. The random draw is derived from a hash of
the document id, so a rerun keeps exactly the same documents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import xxhash

from curate.classifier import TextClassifier, TrainOptions, TrainReport, train_classifier
from curate.stage import Stage, StageResult
from curate.stages.textstats import first_reason, text_column

_UNIT = float(2 ** 64)


def pareto_draws(ids: list[str], alpha: float, seed: int = 0) -> np.ndarray:
    """One draw per id from the distribution of ``numpy.random.pareto(alpha)`` (Lomax), fixed by the id.

    Inverse transform of a uniform taken from the 64-bit xxhash of the id: the
    same id always gets the same draw, whatever the batch or the worker.
    """
    uniform = np.array([(xxhash.xxh64_intdigest(i.encode("utf-8", "surrogatepass"), seed=seed) + 0.5) / _UNIT for i in ids], dtype=np.float64)
    return (1.0 - uniform) ** (-1.0 / alpha) - 1.0


def pareto_keep(scores: np.ndarray, ids: list[str], alpha: float = 9.0, seed: int = 0) -> np.ndarray:
    """GPT-3's rule: keep a document when its Pareto draw exceeds 1 - score."""
    return pareto_draws(ids, alpha, seed) > 1.0 - np.asarray(scores, dtype=np.float64)


class QualityClassifier(Stage):
    name = "quality"
    outputs = (pa.field("quality_score", pa.float32()),)

    @dataclass
    class Params:
        #: A model trained with ``curate quality train`` (fastText binary, label 1 = reference quality).
        model: str = ""
        #: "pareto": GPT-3's stochastic rule; "threshold": keep score >= threshold; "score": label only.
        mode: Literal["pareto", "threshold", "score"] = "pareto"
        threshold: float = 0.5
        pareto_alpha: float = 9.0
        #: Mixed into the id hash: another seed gives another (still reproducible) sample.
        seed: int = 0

        def validate(self) -> None:
            if not self.model:
                raise ValueError("model: give the path of a model trained with `curate quality train`")
            if not 0.0 <= self.threshold <= 1.0:
                raise ValueError("threshold: must be in [0, 1]")
            if self.pareto_alpha <= 0:
                raise ValueError("pareto_alpha: must be > 0")

    def setup(self) -> None:
        if not os.path.isfile(self.params.model):
            raise FileNotFoundError(f"quality model not found: {self.params.model}")
        self.classifier = TextClassifier(self.params.model)

    def process(self, table: pa.Table) -> StageResult:
        p = self.params
        texts = text_column(table).to_pylist()
        scores = self.classifier.score(texts)
        if "id" in table.column_names:
            ids = [i if i is not None else t for i, t in zip(table["id"].to_pylist(), texts)]
        else:
            ids = texts
        if p.mode == "pareto":
            drop = ~pareto_keep(scores, ids, p.pareto_alpha, p.seed)
        elif p.mode == "threshold":
            drop = scores < p.threshold
        else:
            drop = np.zeros(len(texts), dtype=bool)
        table = table.append_column("quality_score", pa.array(scores, pa.float32()))
        return StageResult(table, first_reason(len(texts), [(drop, f"quality:{p.mode}")]))


def train_quality_model(positive: list[str], negative: list[str], output: str,
                        options: TrainOptions | None = None) -> TrainReport:
    """Train the quality classifier: ``positive`` reference texts (label 1) against ``negative`` ones (label 0).

    Saves the model to ``output`` and returns held-out precision/recall/F1 on a
    seeded share of each side, with the warnings a small or unbalanced set earns.
    """
    positive = [t for t in positive if t and t.strip()]
    negative = [t for t in negative if t and t.strip()]
    if not positive or not negative:
        raise ValueError("training needs non-empty positive and negative texts")
    texts = positive + negative
    labels = [1] * len(positive) + [0] * len(negative)
    return train_classifier(texts, labels, output, options, names={1: "positive", 0: "negative"})
