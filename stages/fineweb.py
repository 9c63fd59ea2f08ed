"""FineWeb's three extra rules (Penedo et al. 2024, "The FineWeb Datasets"), plus its list-ratio rule.

Over the non-empty lines of a document: the share ending in sentence-final
punctuation (before any closing quotes or brackets: ``“Yes.”`` ends a
sentence) must be at least ``min_line_punct_ratio`` (0.12); the share of
lines of at most ``short_line_length`` characters must be at most
``max_short_line_ratio`` (0.67); characters in lines that repeat an earlier
line, over all non-newline characters, at most ``max_dup_line_char_ratio``
(0.01); and newlines per word at most ``max_newline_ratio`` (0.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from curate.stage import Stage, StageResult
from curate.stages.gopher import duplicates
from curate.stages.textstats import (
    CLOSING_MARKS, SENTENCE_TERMINALS, ends_sentence, first_reason, row_languages, rule_applies, split_words, text_column, word_mode,
)


def fineweb_signals(text: str, lang: str | None, terminals: tuple[str, ...], short_line_length: int,
                    cjk_marks: str = "", closing: str = "") -> tuple[int, float, float, float, float]:
    """(non-empty lines, line punct ratio, short line ratio, duplicated line char ratio, newline ratio).

    With ``cjk_marks`` a line counts as punctuated when it contains one of them anywhere;
    otherwise when it ends in one of ``terminals``, before any of the ``closing`` marks.
    """
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return 0, 0.0, 0.0, 0.0, 0.0
    if cjk_marks:
        punct = sum(1 for line in lines if any(mark in line for mark in cjk_marks)) / len(lines)
    else:
        ends = (lambda line: ends_sentence(line, terminals, closing)) if closing else (lambda line: line.endswith(terminals))
        punct = sum(1 for line in lines if ends(line)) / len(lines)
    short = sum(1 for line in lines if len(line) <= short_line_length) / len(lines)
    chars = len(text) - text.count("\n")
    dup = duplicates(lines)[1] / chars if chars else 0.0
    words = len(split_words(text, lang))
    newline = text.count("\n") / words if words else 0.0
    return len(lines), punct, short, dup, newline


class FineWebQuality(Stage):
    name = "fineweb"
    outputs = tuple(pa.field(f"fineweb_{name}", pa.float32())
                    for name in ("line_punct_ratio", "short_line_ratio", "dup_line_char_ratio", "newline_ratio"))

    @dataclass
    class Params:
        min_line_punct_ratio: float = 0.12
        #: Keep documents whose ratio is 0 (no line ends in punctuation): off, as published.
        line_punct_exclude_zero: bool = False
        max_short_line_ratio: float = 0.67
        short_line_length: int = 30
        #: A 15-character Chinese line carries about as much as a 30-character English one.
        cjk_short_line_length: int = 15
        max_dup_line_char_ratio: float = 0.01
        max_newline_ratio: float = 0.3
        #: Chinese/Japanese paragraphs are long lines often cut before their final mark (a colon
        #: before a list, a bracket, markup): there a line counts when it contains one of these.
        cjk_sentence_marks: str = "。！？"
        #: Sentence-final marks (Unicode Sentence_Terminal, common scripts).
        terminal_punctuation: str = SENTENCE_TERMINALS
        #: "published": a line ending in a sentence-final mark followed by closing quotes or
        #: brackets (“Willingly.” ‘Why?’ (See above.)) counts as ending in punctuation, as the
        #: paper's "lines ending with punctuation" means. "datatrove": only the last character
        #: counts (quoted dialogue then counts as unpunctuated: docs/quality.md).
        sentence_end: Literal["published", "datatrove"] = "published"
        #: Languages whose rows may be rejected ("all", or lid.176 codes); others only get the signals.
        languages: Literal["all"] | list[str] = "all"

        def validate(self) -> None:
            for name in ("min_line_punct_ratio", "max_short_line_ratio", "max_dup_line_char_ratio"):
                if not 0.0 <= getattr(self, name) <= 1.0:
                    raise ValueError(f"{name}: must be in [0, 1]")
            if self.max_newline_ratio < 0:
                raise ValueError("max_newline_ratio: must be >= 0")
            if self.short_line_length < 0 or self.cjk_short_line_length < 0:
                raise ValueError("short_line_length: must be >= 0")
            if not self.terminal_punctuation:
                raise ValueError("terminal_punctuation: must not be empty")

    def setup(self) -> None:
        from curate.stages.textstats import load_segmenter

        load_segmenter()

    def process(self, table: pa.Table) -> StageResult:
        p = self.params
        texts = text_column(table).to_pylist()
        langs = row_languages(table)
        n = len(texts)
        terminals = tuple(p.terminal_punctuation)
        closing = CLOSING_MARKS if p.sentence_end == "published" else ""
        values = np.array([
            fineweb_signals(t, l, terminals, p.short_line_length, closing=closing)
            if word_mode(l) == "spaces" else
            fineweb_signals(t, l, terminals, p.cjk_short_line_length, p.cjk_sentence_marks)
            for t, l in zip(texts, langs)
        ], dtype=np.float64).reshape(n, 5)
        lines, punct, short, dup, newline = values.T
        applies = rule_applies(langs, p.languages)
        low_punct = (punct < p.min_line_punct_ratio) & ~((punct == 0) & p.line_punct_exclude_zero)
        reasons = first_reason(n, [
            (applies & (lines == 0), "fineweb:empty"),
            (applies & low_punct, "fineweb:line_punct_ratio"),
            (applies & (short > p.max_short_line_ratio), "fineweb:short_line_ratio"),
            (applies & (dup > p.max_dup_line_char_ratio), "fineweb:dup_line_char_ratio"),
            (applies & (newline > p.max_newline_ratio), "fineweb:newline_ratio"),
        ])
        columns = {
            "fineweb_line_punct_ratio": punct,
            "fineweb_short_line_ratio": short,
            "fineweb_dup_line_char_ratio": dup,
            "fineweb_newline_ratio": newline,
        }
        for name, column in columns.items():
            table = table.append_column(name, pa.array(column, pa.float32()))
        return StageResult(table, reasons)
