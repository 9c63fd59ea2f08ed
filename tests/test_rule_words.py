"""Words are cut once per document and shared by the quality stages (#16): the same words, the same signals.

The shortcuts (a per-worker cache of each document's words, Latin text cut chunk by chunk,
C4's Chinese lines taken from the document's one jieba cut) must give exactly what cutting
each text afresh gives, on real text, and a stage's signals must not depend on which stage
cut the words first.
"""

from __future__ import annotations

import re
from collections import Counter

import pyarrow as pa
import pytest

from curate.stages import textstats
from curate.stages.c4 import C4Quality
from curate.stages.fineweb import FineWebQuality
from curate.stages.gopher import GopherQuality, GopherRepetition
from curate.tests.corpora import book_paragraphs, chinese_paragraphs


def fresh_latin(text: str) -> list[str]:
    """The Latin-script cut of a whole text in one go (what the chunk cache must reproduce)."""
    return textstats._latin_cut(text).split()


def fresh_jieba(text: str) -> list[str]:
    """jieba itself (the reference the exact re-implementation must reproduce)."""
    import jieba

    textstats.load_segmenter()  # initialized, quiet
    return [t for t in jieba.lcut(text) if t and not t.isspace()]


@pytest.fixture(scope="module")
def chinese_docs(shared_data) -> list[str]:
    paragraphs = chinese_paragraphs(shared_data)
    # several paragraphs per document, with the line ends documents carry: \n, \r\n, blank lines,
    # a line of spaces, Latin words and digits among the Han characters
    docs = []
    for i in range(0, 240, 6):
        block = paragraphs[i:i + 6]
        sep = ["\n", "\r\n", "\n\n", "\n   \n", "\u2028", "\n"][i % 6]
        docs.append(sep.join(block) + ("\n" if i % 12 == 0 else ""))
    docs.append("第一行 abc 123\n\n第二行：Python 3.11 的 GIL。\r\n  \n最后一行")
    return docs


@pytest.fixture(scope="module")
def english_docs(shared_data) -> list[str]:
    paragraphs = book_paragraphs(shared_data)
    docs = ["\n".join(paragraphs[i:i + 8]) for i in range(0, 800, 8)]
    docs += [
        "well-known, don't; she's “Willingly.” Mr. Smith -- e.g. www.example.org 3.5 a=b&&c() ... _x_",
        "a\x00b it's\x00 x-\x00y ''' ’s",  # NUL inside chunks: cut on their own
        "x" * 500 + "-y it's",  # a chunk too long to keep
        "",
        "   \n\t ",
    ]
    return docs


def test_latin_words_equal_a_fresh_cut(english_docs):
    textstats.WORDS.clear()
    for doc in english_docs:
        assert textstats.split_words(doc, "en") == fresh_latin(doc)
    for doc in english_docs:  # now from the caches
        assert textstats.split_words(doc, None) == fresh_latin(doc)


def test_exact_jieba_cuts_as_jieba(shared_data):
    """``segment.ExactJieba`` gives jieba's words, whitespace tokens included, on real Chinese text.

    Simplified (Wikipedia) and Traditional (Gutenberg) paragraphs, then strings that reach each
    branch: unknown runs through the HMM, letters and numbers inside and around Han text, "+#&._%-"
    blocks, spaces and line ends of every kind, a Traditional-only run, single characters.
    """
    import jieba

    cutter = textstats.load_segmenter()
    cutter.clear()
    paragraphs = chinese_paragraphs(shared_data)
    texts = paragraphs[:150] + paragraphs[-150:] + [
        "探测到了一次遥远的伽玛射线暴发", "UDFy-38135539 的红移值是8.2%，C++和C#。", "a_b.c&d+e%f-g",
        "李小福是创新办主任也是云计算方面的专家", "  \r\n\t\u3000第一行\r\n\r\n第二行\u2028第三行 ",
        "乾隆年間，臺灣府諸羅縣", "的", "了了了了了了了了", "", " ", "ＡＢＣ１２３全角", "2024年3月5日下午3点",
    ]
    for text in texts:
        assert cutter.cut(text) == jieba.lcut(text), text[:60]
    for text in texts[:50]:  # again, from the block memo
        assert cutter.cut(text) == jieba.lcut(text), text[:60]


def test_chinese_words_equal_jieba(chinese_docs):
    textstats.WORDS.clear()
    for doc in chinese_docs:
        assert textstats.split_words(doc, "zh") == fresh_jieba(doc)


def test_chinese_line_words_equal_cutting_each_line(chinese_docs):
    """C4 reads a Chinese document's lines from the one cut of the whole document."""
    textstats.WORDS.clear()
    for doc in chinese_docs:
        lines = [line for line in doc.splitlines() if line.strip()]
        assert textstats.line_words(doc, "zh") == [fresh_jieba(line.strip()) for line in lines]
    assert textstats.line_words("日本語のテキスト。\n二行目", "ja") == [
        textstats._JA_TOKEN.findall("日本語のテキスト。"), textstats._JA_TOKEN.findall("二行目")]


def test_word_cache_stays_within_its_bound():
    cache = textstats._WordCache(max_chars=10_000, max_doc_chars=3_000)
    for i in range(200):
        text = f"document {i} " + "word " * (i % 50)
        assert cache.get("spaces", text, textstats._latin_words).split() == fresh_latin(text)
    assert cache._chars <= 10_000
    big = "long " * 1_000  # over max_doc_chars: cut, not kept
    assert cache.get("spaces", big, textstats._latin_words).split() == fresh_latin(big)
    assert (("spaces", big) not in cache._entries) and cache._chars <= 10_000


@pytest.mark.parametrize("first", [None, GopherRepetition, C4Quality])
def test_signals_do_not_depend_on_which_stage_cut_first(first, english_docs, chinese_docs):
    """Each stage's output on a cold cache equals its output after another stage filled it."""
    texts = english_docs[:40] + chinese_docs[:20]
    langs = ["en"] * 40 + ["zh"] * 20
    table = pa.table({"text": texts, "lang": langs})
    stages = [GopherRepetition(), GopherQuality(), C4Quality(), FineWebQuality()]
    for s in stages:
        s.ensure_setup()
    cold = []
    for s in stages:
        textstats.WORDS.clear()
        result = s.process(table)
        cold.append((result.table, result.reasons))
    textstats.WORDS.clear()
    if first is not None:
        first().process(table)
    for s, (table_cold, reasons_cold) in zip(stages, cold):
        result = s.process(table)
        assert result.table.equals(table_cold), s.name
        assert result.reasons.equals(reasons_cold), s.name


def test_c4_chinese_lines_counted_as_before(chinese_docs):
    """C4's per-line verdicts on Chinese text, against cutting every line on its own."""
    stage = C4Quality()
    stage.ensure_setup()
    textstats.WORDS.clear()
    for doc in chinese_docs[:15]:
        verdicts = stage.judge(doc, "zh")
        lines = [line.strip() for line in doc.splitlines() if line.strip()]
        assert verdicts.lines == len(lines)
        # a line is kept only with enough words (the words C4 counts: jieba words with a letter or digit)
        for kept in verdicts.kept:
            source = next(line for line in lines if re.sub(r"\[\d*\]|\[edit\]|\[citation needed\]", "", line) == kept)
            words = [w for w in fresh_jieba(source) if textstats.is_word(w)]
            assert len(words) >= stage.params.min_words_per_line


def reference_ngram_signals(words: list[str], length: int) -> list[float]:
    """The 9 n-gram fractions of Gopher's repetition rules, straightforwardly: tuples and a Counter.

    Top n-gram (n = 2..4): characters of the most frequent n-gram (words joined by spaces) times
    its count; a tie goes to the n-gram seen first. When no n-gram repeats, the fast path (and the
    code before #16) takes the first start whose (n-1)-gram repeats, if any, else the first n-gram:
    every n-gram then counts once, and this only picks which one. Duplicated n-grams (n = 5..10):
    datatrove's left-to-right scan that jumps past each repeat.
    """
    out = []
    for n in (2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if not grams:
            out.append(0.0)
            continue
        gram, count = Counter(grams).most_common(1)[0]
        if count == 1 and n > 2:
            shorter = Counter(tuple(words[i:i + n - 1]) for i in range(len(words) - n + 2))
            starts = [i for i in range(len(grams)) if shorter[tuple(words[i:i + n - 1])] > 1]
            gram = grams[starts[0]] if starts else grams[0]
        out.append((sum(map(len, gram)) + n - 1) * count / length)
    for n in (5, 6, 7, 8, 9, 10):
        seen, chars, i = set(), 0, 0
        while i <= len(words) - n:
            gram = tuple(words[i:i + n])
            if gram in seen:
                chars += sum(map(len, gram))
                i += n
            else:
                seen.add(gram)
                i += 1
        out.append(chars / length)
    return out


def test_repetition_ngrams_equal_a_straightforward_count(english_docs, chinese_docs):
    """The hashed, narrowing n-gram search of ``gopher.repetition_signals`` against tuples and a Counter."""
    from curate.stages.gopher import repetition_signals

    repeated = [
        "a b a b a b", "x y a b c a b d", "a", "a a", "one two three four five six " * 7 + "end",
        "Home | About | Contact\n" * 5 + english_docs[0][:2000],
        english_docs[1][:3000] + "\n\n" + english_docs[1][:3000],  # the whole text twice
    ]
    cases = [(d, "en") for d in english_docs[:60] + repeated] + [(d, "zh") for d in chinese_docs[:20]]
    cases.append((chinese_docs[0] + "\n" + chinese_docs[0], "zh"))
    for text, lang in cases:
        got = repetition_signals(text, lang)[4:]
        want = reference_ngram_signals(textstats.split_words(text, lang), len(text)) if text else [0.0] * 9
        assert got == pytest.approx(want, rel=1e-12, abs=0), text[:60]
