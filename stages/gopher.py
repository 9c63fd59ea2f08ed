"""Gopher's quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A1).

Defaults are the published thresholds (also datatrove's). Words are what
``textstats.split_words`` returns for the row's language, so Chinese is counted
in jieba words and Japanese in characters; the mean-word-length bounds for
Chinese are their own parameters (see docs/quality.md). The alphabetic-words
share counts words between spaces, as the paper says, not datatrove's tokens
(where each punctuation mark is a word and dialogue fails the rule). Line and symbol
statistics are Arrow RE2 kernels over the whole batch; words come from one
compiled regex per document (jieba for Chinese).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.stage import Stage, StageResult
from curate.stages.textstats import (
    STOP_WORDS, count_literal, count_regex, first_reason, is_word, numpy_column, row_languages, rule_applies,
    safe_ratio, split_words, text_column, word_mode,
)

_LINE_BREAK = r"\r\n|\n|\r"
_BULLETS = "•‣●▪◦-"
_BULLET_LINE = r"(?m)^[^\S\n]*[" + re.escape(_BULLETS) + "]"
_ELLIPSIS_LINE = r"(?m)(?:\.\.\.|…)[^\S\n]*$"


def _line_counts(texts) -> np.ndarray:
    """What ``str.splitlines`` would count: breaks, plus one unless the text ends with a break."""
    breaks = count_regex(texts, _LINE_BREAK)
    ends_with_break = count_regex(texts, r"(?:\r\n|\n|\r)$")
    nonempty = numpy_column(pc.utf8_length(texts), np.int64) > 0
    return np.where(nonempty, breaks + 1 - ends_with_break, 0)


_HAS_LETTER = re.compile(r"[^\W\d_]")


def word_stats(text: str, lang: str | None) -> tuple[int, int, int, int, int, int, int]:
    """Counts behind the Gopher rules, one document.

    (words, their characters, tokens incl. punctuation, words with a letter,
    distinct stop words, whitespace-separated words, those with a letter).
    Words are tokens with a letter or digit, their punctuation split off; the
    last two count what Gopher's paper calls words, strings between spaces
    ("“Willingly,”" is one word with a letter, not three tokens). Unsegmented
    scripts have no spaces between words: there both pairs count jieba words
    (or characters for ja) without punctuation. Stop words are -1 for a
    language without a list (the rule is then skipped); rows of unknown
    language use the English list.
    """
    tokens = split_words(text, lang)
    if word_mode(lang) == "spaces":
        words = [t for t in tokens if t[0].isalnum() or t[-1].isalnum()]
        alpha = sum(1 for t in words if not t[0].isdigit() or _HAS_LETTER.search(t))
        spaced = text.split()
        spaced_alpha = sum(1 for w in spaced if _HAS_LETTER.search(w))
    else:
        words = [t for t in tokens if is_word(t)]
        alpha = sum(1 for t in words if _HAS_LETTER.search(t))
        spaced, spaced_alpha = words, alpha
    stop_list = STOP_WORDS.get(lang or "en")
    stops = len(stop_list.intersection({w.lower() for w in set(words)})) if stop_list is not None else -1
    return len(words), sum(map(len, words)), len(tokens), alpha, stops, len(spaced), spaced_alpha


class GopherQuality(Stage):
    """Gopher's quality rules: word count, mean word length, symbol, ellipsis and bullet ratios, stop words."""

    name = "gopher_quality"
    outputs = (pa.field("gopher_words", pa.int32()), pa.field("gopher_mean_word_length", pa.float32()),
               pa.field("gopher_hash_ratio", pa.float32()), pa.field("gopher_ellipsis_ratio", pa.float32()),
               pa.field("gopher_bullet_lines_ratio", pa.float32()),
               pa.field("gopher_ellipsis_lines_ratio", pa.float32()),
               pa.field("gopher_alpha_words_ratio", pa.float32()), pa.field("gopher_stop_words", pa.int32()))

    @dataclass
    class Params:
        min_doc_words: int = 50
        max_doc_words: int = 100_000
        min_avg_word_length: float = 3.0
        max_avg_word_length: float = 10.0
        #: Chinese words (jieba) are 1-4 characters: Wikipedia averages 1.6-2.5 (docs/quality.md).
        zh_min_avg_word_length: float = 1.2
        zh_max_avg_word_length: float = 4.0
        #: "#" per word and "..."/"…" per word, each.
        max_symbol_word_ratio: float = 0.1
        max_bullet_lines_ratio: float = 0.9
        max_ellipsis_lines_ratio: float = 0.3
        #: Share of words with at least one letter (Gopher: "80% of words in a document contain at
        #: least one alphabetic character").
        min_alpha_words_ratio: float = 0.8
        #: What the alphabetic-words share counts. "words": strings between spaces, as Gopher's
        #: paper says. "tokens": every punctuation mark is a token of its own, as datatrove counts
        #: (so dialogue, where “Yes,” is three tokens, falls below 0.8: docs/quality.md). zh/ja
        #: count segmented words without punctuation either way.
        alpha_words_unit: Literal["words", "tokens"] = "words"
        #: Distinct stop words of the row's language (Gopher: two of the, be, to, of, and, that, have, with).
        min_stop_words: int = 2
        #: Languages whose rows may be rejected ("all", or lid.176 codes); others only get the signals.
        languages: Literal["all"] | list[str] = "all"

        def validate(self) -> None:
            for name in ("min_doc_words", "max_doc_words", "min_stop_words"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name}: must be >= 0")
            if self.min_doc_words > self.max_doc_words:
                raise ValueError("min_doc_words: must not exceed max_doc_words")
            if self.min_avg_word_length > self.max_avg_word_length:
                raise ValueError("min_avg_word_length: must not exceed max_avg_word_length")
            if self.zh_min_avg_word_length > self.zh_max_avg_word_length:
                raise ValueError("zh_min_avg_word_length: must not exceed zh_max_avg_word_length")
            for name in ("max_symbol_word_ratio", "max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "min_alpha_words_ratio"):
                if not 0.0 <= getattr(self, name) <= 1.0:
                    raise ValueError(f"{name}: must be in [0, 1]")

    def setup(self) -> None:
        from curate.stages.textstats import load_segmenter

        load_segmenter()

    def process(self, table: pa.Table) -> StageResult:
        p = self.params
        texts = text_column(table)
        n = table.num_rows
        langs = row_languages(table)

        hashes = count_literal(texts, "#")
        ellipses = count_literal(texts, "...") + count_literal(texts, "…")
        lines = _line_counts(texts)
        bullet_lines = count_regex(texts, _BULLET_LINE)
        ellipsis_lines = count_regex(texts, _ELLIPSIS_LINE)

        stats = np.array([word_stats(t, l) for t, l in zip(texts.to_pylist(), langs)], dtype=np.int64).reshape(n, 7)
        words, word_chars, tokens, alpha_words, stop_words, spaced_words, spaced_alpha = stats.T
        has_stop_list = stop_words >= 0
        modes = [word_mode(lang) for lang in langs]
        segmented = np.array([m != "spaces" for m in modes], dtype=bool)
        jieba_rows = np.array([m == "jieba" for m in modes], dtype=bool)
        char_rows = np.array([m == "chars" for m in modes], dtype=bool)
        min_len = np.where(jieba_rows, p.zh_min_avg_word_length, p.min_avg_word_length)
        max_len = np.where(jieba_rows, p.zh_max_avg_word_length, p.max_avg_word_length)
        # characters as words: the mean is 1 by construction, so no bound
        min_len = np.where(char_rows, 0.0, min_len)
        max_len = np.where(char_rows, np.inf, max_len)

        mean_word_length = safe_ratio(word_chars, words)
        hash_ratio = safe_ratio(hashes, words)
        ellipsis_ratio = safe_ratio(ellipses, words)
        bullet_ratio = safe_ratio(bullet_lines, lines)
        ellipsis_line_ratio = safe_ratio(ellipsis_lines, lines)
        if p.alpha_words_unit == "words":
            alpha_ratio = safe_ratio(spaced_alpha, spaced_words)
        else:
            # datatrove counts punctuation tokens as words here; full-width CJK punctuation is one
            # token per mark (a fifth of all jieba tokens), so unsegmented scripts count words only.
            alpha_ratio = safe_ratio(alpha_words, np.where(segmented, words, tokens))

        applies = rule_applies(langs, p.languages)
        reasons = first_reason(n, [
            (applies & (words < p.min_doc_words), "gopher_quality:min_words"),
            (applies & (words > p.max_doc_words), "gopher_quality:max_words"),
            (applies & ((mean_word_length < min_len) | (mean_word_length > max_len)), "gopher_quality:mean_word_length"),
            (applies & ((hash_ratio > p.max_symbol_word_ratio) | (ellipsis_ratio > p.max_symbol_word_ratio)), "gopher_quality:symbol_ratio"),
            (applies & (bullet_ratio > p.max_bullet_lines_ratio), "gopher_quality:bullet_lines"),
            (applies & (ellipsis_line_ratio > p.max_ellipsis_lines_ratio), "gopher_quality:ellipsis_lines"),
            (applies & (alpha_ratio < p.min_alpha_words_ratio), "gopher_quality:alpha_words"),
            (applies & has_stop_list & (stop_words < p.min_stop_words), "gopher_quality:stop_words"),
        ])
        columns = {
            "gopher_words": pa.array(words, pa.int32()),
            "gopher_mean_word_length": pa.array(mean_word_length, pa.float32()),
            "gopher_hash_ratio": pa.array(hash_ratio, pa.float32()),
            "gopher_ellipsis_ratio": pa.array(ellipsis_ratio, pa.float32()),
            "gopher_bullet_lines_ratio": pa.array(bullet_ratio, pa.float32()),
            "gopher_ellipsis_lines_ratio": pa.array(ellipsis_line_ratio, pa.float32()),
            "gopher_alpha_words_ratio": pa.array(alpha_ratio, pa.float32()),
            "gopher_stop_words": pa.array(stop_words, pa.int32(), mask=~has_stop_list),
        }
        for name, column in columns.items():
            table = table.append_column(name, column)
        return StageResult(table, reasons)


# --- repetition ---------------------------------------------------------------------------

_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAKS = re.compile(r"\n+")
_HASH_BASE = np.uint64(1_000_003)


def duplicates(items: list[str]) -> tuple[int, int]:
    """(elements that repeat an earlier one, their characters)."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def _groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal values of ``values``: (first index of each group, its count, each element's group's count).

    One stable sort: what ``np.unique`` with ``return_index``, ``return_inverse`` and
    ``return_counts`` gives (groups in sorted order, first = earliest occurrence), without
    sorting twice.
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new_group = np.empty(len(values), dtype=bool)
    new_group[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new_group[1:])
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.append(starts, len(values)))
    per_element = np.empty(len(values), dtype=np.int64)
    per_element[order] = np.repeat(counts, counts)
    return order[starts], counts, per_element


def _top_chars(hashes: np.ndarray, positions: np.ndarray, cumsum: np.ndarray, n: int) -> tuple[int, np.ndarray]:
    """(characters of the most frequent n-gram among ``positions`` times its count, its elements' counts).

    ``hashes[i]`` is the n-gram hash at start ``positions[i]``; a tie goes to the n-gram that
    occurs first, like ``Counter.most_common``. No positions: every n-gram occurs once and the
    first one (start 0) wins.
    """
    if len(positions) == 0:
        return int(cumsum[n] - cumsum[0]) + n - 1, np.zeros(0, dtype=np.int64)
    first, counts, per_element = _groups(hashes)
    best = counts.max()
    start = int(positions[int(np.min(first[counts == best]))])
    return (int(cumsum[start + n] - cumsum[start]) + n - 1) * int(best), per_element


def duplicate_ngram_chars(hashes: np.ndarray, cumsum: np.ndarray, n: int, candidates: np.ndarray) -> int:
    """Characters in n-grams that repeat an earlier n-gram, scanning left to right.

    ``hashes[i]`` is the n-gram hash at start ``candidates[i]`` (sorted starts whose n-gram
    occurs twice or more: only they can be repeats, so only they are visited in Python).
    After a repeat the scan jumps past it, so no character is counted twice and the words
    inside a repeat are not looked at (datatrove's reading of the Gopher rule).
    """
    seen: set[int] = set()
    chars = 0
    resume = 0
    ends = (cumsum[candidates + n] - cumsum[candidates]).tolist()
    for start, h, length in zip(candidates.tolist(), hashes.tolist(), ends):
        if start < resume:
            continue
        if h in seen:
            chars += length
            resume = start + n
        else:
            seen.add(h)
    return chars


TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)


def repetition_signals(text: str, lang: str | None) -> list[float]:
    """The 13 Gopher repetition fractions of one document, in the order of ``REPETITION_SIGNALS``.

    n-grams are 64-bit polynomial hashes of their words' hashes, built n by n
    (``h[n](i) = h[n-1](i) * base + word(i + n - 1)``). An n-gram can repeat only where its
    (n-1)-gram repeats, so after the 2-grams each n is hashed and grouped only at the starts
    that still repeat: the long n-grams cost little. The top n-gram is looked for among
    those starts too (every other n-gram there occurs once).
    """
    length = len(text)
    if length == 0:
        return [0.0] * len(REPETITION_SIGNALS)
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    para_dups, para_dup_chars = duplicates(paragraphs)
    lines = _LINE_BREAKS.split(text)
    line_dups, line_dup_chars = duplicates(lines)
    out = [para_dups / len(paragraphs), para_dup_chars / length, line_dups / len(lines), line_dup_chars / length]
    words = split_words(text, lang)
    m = len(words)
    if m < 2:
        return out + [0.0] * (len(TOP_NGRAMS) + len(DUP_NGRAMS))
    word_hashes = np.fromiter(map(hash, words), dtype=np.int64, count=m).view(np.uint64)
    cumsum = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=m), out=cumsum[1:])
    positions = np.arange(m - 1)
    hashes = word_hashes[:-1] * _HASH_BASE + word_hashes[1:]  # 2-grams at every start
    for n in TOP_NGRAMS + DUP_NGRAMS:
        if n > 2:
            if m - n + 1 <= 0:
                out.append(0.0)
                continue
            inside = positions < m - n + 1
            positions, hashes = positions[inside], hashes[inside]
            hashes = hashes * _HASH_BASE + word_hashes[positions + (n - 1)]
        if n in TOP_NGRAMS:
            chars, counts = _top_chars(hashes, positions, cumsum, n)
            out.append(chars / length)
        else:
            counts = _groups(hashes)[2] if len(hashes) else np.zeros(0, dtype=np.int64)
        repeats = counts > 1
        positions, hashes = positions[repeats], hashes[repeats]
        if n in DUP_NGRAMS:
            out.append(duplicate_ngram_chars(hashes, cumsum, n, positions) / length)
    return out


REPETITION_SIGNALS = (
    ["dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"]
    + [f"top_{n}gram_char_frac" for n in TOP_NGRAMS]
    + [f"dup_{n}gram_char_frac" for n in DUP_NGRAMS]
)


class GopherRepetition(Stage):
    """Gopher's repetition rules: duplicate lines and paragraphs, top and duplicated n-gram character shares."""

    name = "gopher_repetition"
    outputs = tuple(pa.field(f"gopher_{name}", pa.float32()) for name in REPETITION_SIGNALS)

    @dataclass
    class Params:
        dup_para_frac: float = 0.30
        dup_para_char_frac: float = 0.20
        dup_line_frac: float = 0.30
        dup_line_char_frac: float = 0.20
        top_2gram_char_frac: float = 0.20
        top_3gram_char_frac: float = 0.18
        top_4gram_char_frac: float = 0.16
        dup_5gram_char_frac: float = 0.15
        dup_6gram_char_frac: float = 0.14
        dup_7gram_char_frac: float = 0.13
        dup_8gram_char_frac: float = 0.12
        dup_9gram_char_frac: float = 0.11
        dup_10gram_char_frac: float = 0.10
        #: Languages whose rows may be rejected ("all", or lid.176 codes); others only get the signals.
        languages: Literal["all"] | list[str] = "all"

        def validate(self) -> None:
            for name in REPETITION_SIGNALS:
                if not 0.0 <= getattr(self, name) <= 1.0:
                    raise ValueError(f"{name}: must be in [0, 1]")

    def setup(self) -> None:
        from curate.stages.textstats import load_segmenter

        load_segmenter()

    def process(self, table: pa.Table) -> StageResult:
        texts = text_column(table).to_pylist()
        langs = row_languages(table)
        n = len(texts)
        values = np.array([repetition_signals(t, l) for t, l in zip(texts, langs)], dtype=np.float64).reshape(n, len(REPETITION_SIGNALS))
        applies = rule_applies(langs, self.params.languages)
        reasons = first_reason(n, [
            (applies & (values[:, i] > getattr(self.params, name)), f"gopher_repetition:{name}")
            for i, name in enumerate(REPETITION_SIGNALS)
        ])
        for i, name in enumerate(REPETITION_SIGNALS):
            table = table.append_column(f"gopher_{name}", pa.array(values[:, i], pa.float32()))
        return StageResult(table, reasons)
