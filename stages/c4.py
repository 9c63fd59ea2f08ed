"""C4's heuristic rules (Raffel et al. 2020, section 2.2; the TFDS c4_utils reference code).

Line rules decide which lines C4 keeps: a line must end in terminal
punctuation, before any closing quotes or brackets, or in an end quotation
mark, as the paper says (and not in an ellipsis), have at least ``min_words_per_line``
words, no word over ``max_word_length`` characters, and not mention
javascript or a cookie/terms policy. Document rules: no "lorem ipsum", no
curly bracket in a kept line, at least ``min_sentences`` sentences in the kept
lines. With ``remove_lines`` the text is rewritten to the kept lines (C4
proper); without it the text is untouched and the signals say what would go.

Chinese and Japanese lines end in full-width punctuation (。！？) and their
words are counted with the segmenter; see docs/quality.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from curate.stage import Stage, StageResult
from curate.stages.textstats import (
    ends_sentence, first_reason, is_word, line_words, row_languages, rule_applies, strip_closing,
    text_column, word_mode,
)

#: A token with a letter or digit (``textstats.is_word``), among tokens joined by spaces.
_WORD_TOKEN = re.compile(r"\S*\w\S*")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_ABBREVIATION = re.compile(r"\b(Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Mt|Gen|Col|Capt|Rev|vs|etc|Inc|Ltd|Co|No)\.")
_SENTENCE_END = re.compile(r"[.!?。！？]+[\"'”’」』)）]*(?=\s|$)")
_CJK_SENTENCE_END = re.compile(r"[。！？]+|[.!?]+(?=\s|$)")
#: C4's "end quotation mark": a line may end in one even without a mark before it. Not » or ›:
#: on English pages they are breadcrumb and "Read more »" arrows, not quotes.
_END_QUOTES = tuple("\"'”’」』")
#: zh Wikipedia's script-conversion markup, -{zh-hans:...;zh-tw:...}-: not code.
_ZH_CONVERSION = re.compile(r"-\{[^{}]*\}-")


@dataclass
class LineVerdicts:
    lines: int = 0
    no_terminal_punct: int = 0
    too_few_words: int = 0
    long_word: int = 0
    javascript: int = 0
    policy: int = 0
    sentences: int = 0
    lorem_ipsum: bool = False
    curly_bracket: bool = False
    kept: list | None = None


class C4Quality(Stage):
    name = "c4"
    outputs = (pa.field("c4_lines", pa.int32()), pa.field("c4_kept_lines_ratio", pa.float32()),
               pa.field("c4_no_terminal_punct_ratio", pa.float32()), pa.field("c4_too_few_words_ratio", pa.float32()),
               pa.field("c4_javascript_ratio", pa.float32()), pa.field("c4_policy_ratio", pa.float32()),
               pa.field("c4_sentences", pa.int32()), pa.field("c4_lorem_ipsum", pa.bool_()),
               pa.field("c4_curly_bracket", pa.bool_()))

    @dataclass
    class Params:
        #: Rewrite the text to the lines C4 keeps (otherwise only signals and document rules).
        remove_lines: bool = False
        #: Strip Wikipedia-style citation marks ([1], [edit], [citation needed]) from kept lines.
        remove_citations: bool = True
        #: Lines must end in terminal punctuation: drops menus and titles.
        filter_no_terminal_punct: bool = True
        terminal_punctuation: str = ".?!\"'"
        #: "published": a line ends in terminal punctuation when it does so before its closing
        #: quotes and brackets (“Willingly.” ‘Why?’ (See above.)), or ends in an end quotation mark,
        #: as C4's paper says. "datatrove": the line's last character must be one of
        #: ``terminal_punctuation`` (TFDS and datatrove: a line of dialogue ending in .” is dropped).
        sentence_end: Literal["published", "datatrove"] = "published"
        #: Chinese/Japanese paragraphs are long single lines that often end in a colon, a closing
        #: bracket or markup: such a line counts as a sentence line when it contains one of these.
        cjk_sentence_marks: str = "。！？"
        min_words_per_line: int = 3
        max_word_length: int = 1000
        min_sentences: int = 5
        #: Chinese Wikipedia paragraphs are often one or two sentences of 100+ characters.
        cjk_min_sentences: int = 2
        filter_lorem_ipsum: bool = True
        filter_javascript: bool = True
        filter_curly_bracket: bool = True
        filter_policy: bool = True
        #: Languages whose rows may be rejected or rewritten ("all", or lid.176 codes).
        languages: Literal["all"] | list[str] = "all"

        def validate(self) -> None:
            for name in ("min_words_per_line", "max_word_length", "min_sentences", "cjk_min_sentences"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name}: must be >= 0")
            if not self.terminal_punctuation:
                raise ValueError("terminal_punctuation: must not be empty")

    def setup(self) -> None:
        from curate.stages.textstats import load_segmenter

        load_segmenter()

    def judge(self, text: str, lang: str | None) -> LineVerdicts:
        p = self.params
        cjk = word_mode(lang) != "spaces"
        terminal = tuple(p.terminal_punctuation)
        v = LineVerdicts(kept=[])
        lines = [line for line in map(str.strip, text.splitlines()) if line]
        # CJK words come from the document's one cut, shared with the other stages (textstats.WORDS)
        cut = line_words(text, lang) if cjk else map(str.split, lines)
        for line, words in zip(lines, cut):
            v.lines += 1
            if cjk:  # words with a letter or digit (no token holds whitespace): one regex pass, not one per word
                word_count = len(_WORD_TOKEN.findall(" ".join(words)))
                long_words = (w for w in words if len(w) > p.max_word_length and is_word(w))
            else:
                word_count = len(words)
                long_words = (w for w in words if len(w) > p.max_word_length)
            # a word is part of its line: only a line longer than the limit can hold a longer word
            if 0 < p.max_word_length < len(line) and any(long_words):
                v.long_word += 1
                continue
            if p.remove_citations:
                line = _CITATION.sub("", line)
            if cjk:
                unpunctuated = not any(mark in line for mark in p.cjk_sentence_marks)
            elif p.sentence_end == "published":
                unpunctuated = (not (ends_sentence(line, terminal) or line.endswith(_END_QUOTES))
                                or strip_closing(line).endswith(("...", "…")))
            else:
                unpunctuated = not line.endswith(terminal) or line.endswith("...")
            if p.filter_no_terminal_punct and unpunctuated:
                v.no_terminal_punct += 1
                continue
            if word_count < p.min_words_per_line:
                v.too_few_words += 1
                continue
            lower = line.lower()
            if p.filter_lorem_ipsum and "lorem ipsum" in lower:
                v.lorem_ipsum = True
            if p.filter_javascript and "javascript" in lower:
                v.javascript += 1
                continue
            if p.filter_curly_bracket and "{" in (_ZH_CONVERSION.sub("", line) if cjk else line):
                v.curly_bracket = True
            if p.filter_policy and any(phrase in lower for phrase in POLICY_PHRASES):
                v.policy += 1
                continue
            ends = _CJK_SENTENCE_END.findall(line) if cjk else _SENTENCE_END.findall(_ABBREVIATION.sub(r"\1", line))
            v.sentences += max(1, len(ends))
            v.kept.append(line)
        return v

    def process(self, table: pa.Table) -> StageResult:
        p = self.params
        texts = text_column(table).to_pylist()
        langs = row_languages(table)
        n = len(texts)
        verdicts = [self.judge(t, l) for t, l in zip(texts, langs)]
        lines = np.array([v.lines for v in verdicts], dtype=np.float64)

        def share(attr: str) -> np.ndarray:
            counts = np.array([getattr(v, attr) for v in verdicts], dtype=np.float64)
            return np.divide(counts, lines, out=np.zeros(n), where=lines > 0)

        kept_lines = np.array([len(v.kept) for v in verdicts], dtype=np.float64)
        sentences = np.array([v.sentences for v in verdicts], dtype=np.int64)
        min_sentences = np.array([p.cjk_min_sentences if word_mode(l) != "spaces" else p.min_sentences for l in langs])
        lorem = np.array([v.lorem_ipsum for v in verdicts], dtype=bool)
        curly = np.array([v.curly_bracket for v in verdicts], dtype=bool)
        applies = rule_applies(langs, p.languages)
        reasons = first_reason(n, [
            (applies & lorem, "c4:lorem_ipsum"),
            (applies & curly, "c4:curly_bracket"),
            (applies & (sentences < min_sentences), "c4:min_sentences"),
        ])
        if p.remove_lines:  # kept documents only: a reject keeps its text as it came, for inspection
            rewrite = applies & np.array([r is None for r in reasons.to_pylist()], dtype=bool)
            rewritten = [("\n".join(v.kept) if ok else t) for v, t, ok in zip(verdicts, texts, rewrite)]
            table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(rewritten, pa.string()))
        columns = {
            "c4_lines": pa.array(lines, pa.int32()),
            "c4_kept_lines_ratio": pa.array(np.divide(kept_lines, lines, out=np.zeros(n), where=lines > 0), pa.float32()),
            "c4_no_terminal_punct_ratio": pa.array(share("no_terminal_punct"), pa.float32()),
            "c4_too_few_words_ratio": pa.array(share("too_few_words"), pa.float32()),
            "c4_javascript_ratio": pa.array(share("javascript"), pa.float32()),
            "c4_policy_ratio": pa.array(share("policy"), pa.float32()),
            "c4_sentences": pa.array(sentences, pa.int32()),
            "c4_lorem_ipsum": pa.array(lorem, pa.bool_()),
            "c4_curly_bracket": pa.array(curly, pa.bool_()),
        }
        for name, column in columns.items():
            table = table.append_column(name, column)
        return StageResult(table, reasons)
