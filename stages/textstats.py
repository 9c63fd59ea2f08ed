"""Text statistics shared by the language-ID and quality stages.

Words are what the rules count, so "a word" must mean something in every
script: whitespace/punctuation splitting for alphabetic scripts, jieba
segmentation for Chinese, single characters for Japanese (kana and kanji runs
have no reliable cheap segmenter here). Script ratios are computed with Arrow's
RE2 kernels for a whole batch at once.
"""

from __future__ import annotations

import functools
import logging
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Han (incl. extension A and compatibility), kana, hangul. RE2 and Python share this syntax.
HAN = r"\x{3400}-\x{4DBF}\x{4E00}-\x{9FFF}\x{F900}-\x{FAFF}\x{20000}-\x{2A6DF}"
KANA = r"\x{3040}-\x{30FF}\x{31F0}-\x{31FF}"
HANGUL = r"\x{AC00}-\x{D7AF}\x{1100}-\x{11FF}"
CJK_RE2 = f"[{HAN}{KANA}{HANGUL}]"
_PY_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\u3040-\u30ff\u31f0-\u31ff"

#: Languages whose words are not separated by spaces, and how we cut them.
SEGMENTED = {"zh": "jieba", "yue": "jieba", "wuu": "jieba", "gan": "jieba", "ja": "chars"}

#: Stop words per language. ``en`` is Gopher's list (Rae et al. 2021, "at least two of": the
#: rule that gives it meaning); the others are the most frequent function words of each
#: language, so that "contains at least two" separates running text from menus and lists.
STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(["the", "be", "to", "of", "and", "that", "have", "with"]),
    "de": frozenset(["der", "die", "das", "und", "ist", "nicht", "mit", "von", "zu", "ein", "eine", "den", "dem", "sich"]),
    "fr": frozenset(["le", "la", "les", "de", "des", "et", "est", "un", "une", "du", "que", "qui", "dans", "pour"]),
    "es": frozenset(["el", "la", "los", "las", "de", "que", "y", "en", "un", "una", "es", "por", "con", "para"]),
    "zh": frozenset(["的", "了", "是", "在", "和", "有", "也", "就", "不", "都", "这", "与", "及", "而",
                     "之", "其", "为", "被", "把", "等", "中", "对", "以", "于", "從", "从", "並", "并",
                     "這", "與", "為", "對", "於", "個", "个", "他", "她", "我", "你", "们", "們"]),
    "ja": frozenset(["の", "に", "は", "を", "た", "が", "で", "て", "と", "し", "れ", "さ", "ある", "いる"]),
}
# Chinese variants lid.176 reports separately share the Chinese list.
for _variant in ("yue", "wuu", "gan"):
    STOP_WORDS[_variant] = STOP_WORDS["zh"]

# Close to spaCy's English tokenizer (what datatrove counts): a whitespace-separated chunk
# loses its leading and trailing punctuation, one mark per token ("..." and "--" whole);
# what is left stays one token (don't, www.example.org, 3.5, a=b&&c()).
_LATIN_TOKEN = re.compile(r"(?i:['’](?:s|re|ll|ve|d|m)\b)|\b(?:Mrs|Mr|Ms|Dr)\.|[^\W_](?:\S*[^\W_])?|\.{2,}|-{2,}|[^\w\s]|_")
# ... except that hyphens between letters split (well-known -> well - known), and so do
# English clitics (don't -> do n't, she's -> she 's).
_LETTER_HYPHENS = re.compile(r"(?<=[^\W\d_])(-+)(?=[^\W\d_])")
_CLITICS = re.compile(r"(?<=[^\W\d_])(n['’]t|['’](?:s|re|ll|ve|d|m))\b", re.IGNORECASE)
_JA_TOKEN = re.compile(f"[{_PY_CJK}]|[^\\W{_PY_CJK}]+|[^\\w\\s]+")
_HAS_WORD_CHAR = re.compile(r"\w")
_ZH_TOKEN_FIXUP = re.compile(r"\s+")


def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


@functools.lru_cache(maxsize=1)
def load_segmenter():
    """jieba's cut (``segment.ExactJieba``: jieba's words, faster) with its dictionary loaded, once per process."""
    _jieba().initialize()
    from curate.stages.segment import exact_jieba

    return exact_jieba()


def _segment(text: str) -> list[str]:
    return [t for t in load_segmenter().cut(text) if t and not t.isspace()]


#: Characters that end a line for ``str.splitlines`` (jieba yields each as a whitespace token).
_LINE_ENDS = frozenset(["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])


def _segment_lines(text: str) -> str:
    """jieba words of ``text`` joined by spaces, its lines by newlines (blank lines left out).

    jieba cuts runs of Han characters and letters/digits, and no such run crosses a line
    end, so a line's words are the words of the whole text that fall in it: one pass
    gives C4's per-line counts and the whole-document ones alike.
    """
    lines, current = [], []
    for token in load_segmenter().cut(text):
        if not token:
            continue
        if token.isspace():
            if token in _LINE_ENDS and current:
                lines.append(" ".join(current))
                current = []
        else:
            current.append(token)
    if current:
        lines.append(" ".join(current))
    return "\n".join(lines)


class _WordCache:
    """Recent documents' words, so the stages of one worker cut each document once.

    gopher_repetition, gopher_quality, c4 (Chinese lines) and fineweb all count the words of
    the same batch in turn; cutting is most of their cost (jieba especially). A value is the
    words joined by spaces (lines by newlines for jieba): no word holds whitespace, so
    ``str.split`` gives them back exactly, at a small fraction of the cost of cutting, and
    the cache holds about as many characters as the texts themselves. Bounded by
    ``max_chars`` (least recently used go first); longer documents are not kept.
    """

    def __init__(self, max_chars: int = 16_000_000, max_doc_chars: int = 2_000_000):
        self.max_chars, self.max_doc_chars = max_chars, max_doc_chars
        self._entries: dict[tuple[str, str], str] = {}
        self._chars = 0
        self.hits = self.misses = 0

    def get(self, mode: str, text: str, compute) -> str:
        key = (mode, text)
        found = self._entries.pop(key, None)
        if found is not None:
            self._entries[key] = found  # most recent last
            self.hits += 1
            return found
        self.misses += 1
        value = compute(text)
        size = len(text) + len(value)
        if len(text) <= self.max_doc_chars:
            while self._entries and self._chars + size > self.max_chars:
                (_, old_text), old_value = next(iter(self._entries.items()))
                del self._entries[(_, old_text)]
                self._chars -= len(old_text) + len(old_value)
            self._entries[key] = value
            self._chars += size
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._chars = 0
        _CHUNKS.clear()
        if load_segmenter.cache_info().currsize:
            load_segmenter().clear()


WORDS = _WordCache()


def _latin_cut(text: str) -> str:
    return " ".join(_LATIN_TOKEN.findall(_CLITICS.sub(r" \1", _LETTER_HYPHENS.sub(r" \1 ", text))))


#: Whitespace-separated chunk -> its tokens joined by spaces. No token and no pattern of
#: ``_latin_cut`` looks across whitespace (a chunk's edges see a space or the text's edge,
#: which the lookarounds and ``\b`` treat alike), so a text's tokens are its chunks' tokens
#: in order; chunks repeat (Zipf), so most are a dictionary hit instead of three regex passes.
_CHUNKS: dict[str, str] = {}
_CHUNKS_LIMIT = 1 << 20
_CHUNK_MAX_CHARS = 64


def _latin_words(text: str) -> str:
    chunks = text.split()
    try:
        return " ".join(map(_CHUNKS.__getitem__, chunks))
    except KeyError:
        pass
    if len(_CHUNKS) > _CHUNKS_LIMIT:
        _CHUNKS.clear()
    new = [c for c in set(chunks).difference(_CHUNKS) if "\x00" not in c]
    # one regex pass over all new chunks, each followed by a NUL: a token of its own, never
    # whitespace, so the cut splits back into the chunks' cuts
    cuts = _latin_cut(" \x00 ".join(new)).split(" \x00 ") if new else []
    missing = dict(zip(new, cuts))
    missing.update((c, _latin_cut(c)) for c in set(chunks).difference(_CHUNKS) if "\x00" in c)
    _CHUNKS.update((c, cut) for c, cut in missing.items() if len(c) <= _CHUNK_MAX_CHARS)
    known = _CHUNKS.get
    return " ".join([known(c) or missing[c] for c in chunks])


def _ja_words(text: str) -> str:
    return " ".join(_JA_TOKEN.findall(text))


_CUTTERS = {"jieba": _segment_lines, "chars": _ja_words, "spaces": _latin_words}


def word_mode(lang: str | None) -> str:
    """"jieba", "chars" or "spaces": how words of ``lang`` are cut."""
    return SEGMENTED.get(lang or "", "spaces")


def split_words(text: str, lang: str | None = None) -> list[str]:
    """Tokens of ``text``: words and punctuation runs (whitespace dropped).

    Chinese is segmented with jieba, Japanese is cut into characters (Latin runs
    inside stay whole), other languages split on whitespace and punctuation.
    Each document is cut once per worker (``WORDS``), whichever stage asks first.
    """
    mode = word_mode(lang)
    return WORDS.get(mode, text, _CUTTERS[mode]).split()


def line_words(text: str, lang: str | None = None) -> list[list[str]]:
    """``split_words`` of each non-blank line of ``text`` (``str.splitlines``), in order.

    For jieba the lines come from the whole document's cut (the same words: see
    ``_segment_lines``); other modes cut line by line, which is what they cost anyway.
    """
    mode = word_mode(lang)
    lines = [line for line in text.splitlines() if line.strip()]
    if mode == "jieba":
        cut = [line.split(" ") for line in WORDS.get(mode, text, _segment_lines).split("\n") if line]
        if len(cut) == len(lines):  # always, by jieba's construction; cut line by line if it ever were not
            return cut
    return [_CUTTERS[mode](line).split() for line in lines]


def is_word(token: str) -> bool:
    """A token with at least one letter or digit (not a punctuation/symbol run)."""
    return _HAS_WORD_CHAR.search(token) is not None


def script_ratio(texts: pa.Array | pa.ChunkedArray, char_class: str = CJK_RE2) -> np.ndarray:
    """Per text: characters matching the RE2 ``char_class`` / non-whitespace characters (float32)."""
    if len(texts) == 0:
        return np.zeros(0, dtype=np.float32)
    matched = pc.count_substring_regex(texts, char_class).to_numpy(zero_copy_only=False)
    total = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    spaces = pc.count_substring_regex(texts, r"\s").to_numpy(zero_copy_only=False)
    visible = np.asarray(total, dtype=np.float64) - np.asarray(spaces, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(visible > 0, np.asarray(matched, dtype=np.float64) / visible, 0.0)
    return np.nan_to_num(ratio).astype(np.float32)


def cjk_ratio(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Share of visible characters that are Han, kana or hangul."""
    return script_ratio(texts, CJK_RE2)


def kana_ratio(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return script_ratio(texts, f"[{KANA}]")


def guess_segmented_language(cjk: float, kana: float) -> str | None:
    """A language for word cutting when no ``lang`` column exists: by script alone."""
    if cjk < 0.3:
        return None
    return "ja" if kana >= 0.1 * cjk else "zh"


def row_languages(table: pa.Table) -> list[str | None]:
    """The ``lang`` column if the table has one, else a script-based guess (zh/ja or None)."""
    if "lang" in table.column_names:
        return table["lang"].to_pylist()
    texts = table["text"]
    cjk, kana = cjk_ratio(texts), kana_ratio(texts)
    return [guess_segmented_language(float(c), float(k)) for c, k in zip(cjk, kana)]


@functools.lru_cache(maxsize=2)
def _converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def convert_chinese(text: str, direction: str = "t2s") -> str:
    """Traditional -> Simplified (``t2s``) or back (``s2t``), OpenCC tables."""
    return _converter(direction).convert(text)


#: Sentence-final marks across scripts (Unicode Sentence_Terminal, the common ones).
SENTENCE_TERMINALS = ".!?։؝؞؟۔܀܁܂।॥။።፧፨។៕。！．？｡‼‽⁇⁈⁉﹒﹖﹗"

#: Marks that may follow a sentence's final mark and still end the sentence: closing quotes
#: (straight and typographic: “Yes.” ‘No!’ «Non.» 「好。」) and closing brackets ((See above.)).
CLOSING_MARKS = "\"'”’»›)]）］」』】〉》〕"


def strip_closing(line: str, closing: str = CLOSING_MARKS) -> str:
    """``line`` without the closing quotes and brackets at its end (and the spaces among them)."""
    return line.rstrip(closing + " \t")


def ends_sentence(line: str, terminals: tuple[str, ...] | str, closing: str = CLOSING_MARKS) -> bool:
    """Whether ``line`` ends in a sentence-final mark, possibly followed by closing quotes/brackets.

    ``He said, “Willingly.”``, ``(See the note.)`` and ``‘Off with her head!’`` end a
    sentence; ``Home | About`` and ``Chapter 1`` do not. The published C4 and FineWeb
    rules mean exactly this ("terminal punctuation", "lines ending with punctuation");
    a bare ``str.endswith`` misses every line of quoted dialogue.
    """
    return strip_closing(line, closing).endswith(tuple(terminals))


def first_reason(n: int, rules: list[tuple[np.ndarray, str]]) -> pa.Array:
    """Per row, the reason of the first rule (in order) whose mask is True; null when none fails."""
    reasons = np.full(n, None, dtype=object)
    for mask, reason in reversed(rules):
        reasons[np.asarray(mask, dtype=bool)] = reason
    return pa.array(reasons, pa.string())


def rule_applies(langs: list[str | None], languages: list[str] | str) -> np.ndarray:
    """Rows whose language is in ``languages`` ("all": every row; no ``lang``: every row)."""
    if languages == "all":
        return np.ones(len(langs), dtype=bool)
    allowed = set(languages)
    return np.array([lang is None or lang in allowed for lang in langs], dtype=bool)


def numpy_column(array: pa.Array | pa.ChunkedArray, dtype=np.float64) -> np.ndarray:
    """An Arrow numeric column as numpy, nulls as 0."""
    fill = False if pa.types.is_boolean(array.type) else 0
    return np.asarray(pc.fill_null(array, fill).to_numpy(zero_copy_only=False), dtype=dtype)


def count_regex(texts: pa.Array | pa.ChunkedArray, pattern: str) -> np.ndarray:
    return numpy_column(pc.count_substring_regex(texts, pattern), np.int64)


def count_literal(texts: pa.Array | pa.ChunkedArray, literal: str) -> np.ndarray:
    return numpy_column(pc.count_substring(texts, literal), np.int64)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def text_column(table: pa.Table) -> pa.ChunkedArray:
    """The ``text`` column with nulls as empty strings (stages after extract may see none, but be safe)."""
    return pc.fill_null(table["text"], "")
