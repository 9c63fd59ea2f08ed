"""Heuristic quality rules: every rule at its threshold edges, Chinese text, junk, bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from curate.params import ConfigError, build_params
from curate.stages.c4 import C4Quality
from curate.stages.code_quality import CodeQuality
from curate.stages.fineweb import FineWebQuality
from curate.stages.gopher import REPETITION_SIGNALS, GopherQuality, GopherRepetition
from curate.stages.langid import LangId
from curate.stages.textstats import split_words


def stage(cls, **raw):
    s = cls(build_params(cls.Params, raw, where=cls.name))
    s.ensure_setup()
    return s


def run(cls, texts, **raw):
    result = stage(cls, **raw).process(pa.table({"text": pa.array(texts, pa.string())}))
    return result.table.to_pylist(), result.reasons.to_pylist()


def unique_words(n: int, start: int = 0) -> list[str]:
    """Distinct lower-case words of 4-7 letters (no stop words, no digits)."""
    letters = "bcdfghjklmnpqrstvwxz"
    out = []
    for i in range(start, start + n):
        word, k = "", i
        for _ in range(3):
            word += letters[k % 20] + "aeiou"[k % 5]
            k //= 20
        out.append(word[: 4 + i % 4])
    return out


def words_doc(n_words: int, stop=("the", "and")) -> str:
    return " ".join(list(stop) + ["house"] * (n_words - len(stop)))


# --- Gopher quality ------------------------------------------------------------------------

def test_gopher_word_count_edges():
    rows, reasons = run(GopherQuality, [words_doc(50), words_doc(49), words_doc(61)], max_doc_words=60)
    assert [r["gopher_words"] for r in rows] == [50, 49, 61]
    assert reasons == [None, "gopher_quality:min_words", "gopher_quality:max_words"]


def test_gopher_default_max_words():
    rows, reasons = run(GopherQuality, [words_doc(100_000), words_doc(100_001)])
    assert reasons == [None, "gopher_quality:max_words"]


def test_gopher_mean_word_length_edges():
    texts = [" ".join(["cat"] * 60), " ".join(["cat"] * 59 + ["at"]), " ".join(["abcdefghij"] * 60),
             " ".join(["abcdefghij"] * 59 + ["abcdefghijk"])]
    rows, reasons = run(GopherQuality, texts, min_stop_words=0)
    assert [round(r["gopher_mean_word_length"], 4) for r in rows] == [3.0, round(179 / 60, 4), 10.0, round(601 / 60, 4)]
    assert reasons == [None, "gopher_quality:mean_word_length", None, "gopher_quality:mean_word_length"]


def test_gopher_symbol_ratio_edges():
    base = words_doc(100).split()
    ok = " ".join(base[:50] + ["#"] * 10 + base[50:])
    bad = " ".join(base[:50] + ["#"] * 11 + base[50:])
    dots_ok = " ".join(base[:50] + ["..."] * 5 + ["…"] * 5 + base[50:])
    dots_bad = " ".join(base[:50] + ["..."] * 11 + base[50:])
    rows, reasons = run(GopherQuality, [ok, bad, dots_ok, dots_bad])
    assert [r["gopher_hash_ratio"] for r in rows[:2]] == pytest.approx([0.1, 0.11])
    assert [r["gopher_ellipsis_ratio"] for r in rows[2:]] == pytest.approx([0.1, 0.11])
    assert reasons == [None, "gopher_quality:symbol_ratio", None, "gopher_quality:symbol_ratio"]


def test_gopher_bullet_and_ellipsis_line_edges():
    line = "the and " + " ".join(["house"] * 8)
    bullets_ok = "\n".join(["• " + line] * 9 + [line])
    bullets_bad = "\n".join(["  - " + line] * 10)
    ellipsis_ok = "\n".join([line + " ..."] * 3 + [line] * 7)
    ellipsis_bad = "\n".join([line + "…  "] * 4 + [line] * 6)
    rows, reasons = run(GopherQuality, [bullets_ok, bullets_bad, ellipsis_ok, ellipsis_bad])
    assert [r["gopher_bullet_lines_ratio"] for r in rows[:2]] == pytest.approx([0.9, 1.0])
    assert [r["gopher_ellipsis_lines_ratio"] for r in rows[2:]] == pytest.approx([0.3, 0.4])
    assert reasons == [None, "gopher_quality:bullet_lines", None, "gopher_quality:ellipsis_lines"]


def test_gopher_alpha_words_edges():
    ok = " ".join(["the", "and"] + ["house"] * 78 + ["1234"] * 20)
    bad = " ".join(["the", "and"] + ["house"] * 77 + ["1234"] * 21)
    rows, reasons = run(GopherQuality, [ok, bad])
    assert [r["gopher_alpha_words_ratio"] for r in rows] == pytest.approx([0.8, 0.79])
    assert reasons == [None, "gopher_quality:alpha_words"]


def test_gopher_alpha_words_count_words_between_spaces():
    # dialogue: every word carries its quotes and commas; datatrove's tokens count each mark as a word
    line = "“Willingly,” said she, “if you wish it; but—” “No!” he cried. ‘Then go.’ "
    text = line * 6
    rows, reasons = run(GopherQuality, [text, text], min_stop_words=0)
    words = text.split()
    assert rows[0]["gopher_alpha_words_ratio"] == pytest.approx(sum(any(c.isalpha() for c in w) for w in words) / len(words))
    assert reasons[0] is None
    rows, reasons = run(GopherQuality, [text], min_stop_words=0, alpha_words_unit="tokens")
    assert rows[0]["gopher_alpha_words_ratio"] < 0.6 and reasons == ["gopher_quality:alpha_words"]
    # numbers, symbols and separators are still words without a letter
    table = " ".join(["the", "and"] + ["house"] * 58 + ["|", "$19.99", "—", "2024"] * 4)
    rows, reasons = run(GopherQuality, [table])
    assert rows[0]["gopher_alpha_words_ratio"] == pytest.approx(60 / 76) and reasons == ["gopher_quality:alpha_words"]


def test_gopher_stop_words_edges():
    texts = [words_doc(60, ("the", "and")), words_doc(60, ("the", "the", "The")), words_doc(60, ("of", "With"))]
    rows, reasons = run(GopherQuality, texts)
    assert [r["gopher_stop_words"] for r in rows] == [2, 1, 2]
    assert reasons == [None, "gopher_quality:stop_words", None]


def test_gopher_languages_param_limits_rejects():
    table = pa.table({"text": [words_doc(10)] * 2, "lang": ["en", "de"]})
    result = stage(GopherQuality, languages=["de"]).process(table)
    assert result.reasons.to_pylist() == [None, "gopher_quality:min_words"]
    assert result.table["gopher_words"].to_pylist() == [10, 10]


def test_gopher_passes_real_english_prose(shared_data):
    book = (shared_data / "books" / "gutenberg" / "pg1342-0.txt").read_text(encoding="utf-8-sig")
    chunks = [c for c in book.split("\n\n") if len(c.split()) > 60][:50]
    _, reasons = run(GopherQuality, chunks)
    assert sum(r is None for r in reasons) >= 45


# --- Gopher repetition ---------------------------------------------------------------------

def rep_signals(text: str, **raw) -> tuple[dict, str | None]:
    rows, reasons = run(GopherRepetition, [text], **raw)
    return rows[0], reasons[0]


def test_repetition_duplicate_lines_edges():
    unique_lines = [" ".join(unique_words(12, 12 * i)) for i in range(7)]
    ok = "\n".join(unique_lines + ["Menu"] * 3)  # first "Menu" is new, 2 repeat: 2/10
    row, reason = rep_signals(ok)
    assert row["gopher_dup_line_frac"] == pytest.approx(0.2)
    assert row["gopher_dup_line_char_frac"] == pytest.approx(8 / len(ok))
    assert reason is None
    at_edge = "\n".join(unique_lines + ["Menu"] * 4)[: None]  # 3 repeats / 11 lines < 0.3
    assert rep_signals(at_edge)[1] is None
    over = "\n".join(unique_lines[:6] + ["Menu"] * 4)  # 3 repeats / 10 lines = 0.3: not above
    row, reason = rep_signals(over)
    assert row["gopher_dup_line_frac"] == pytest.approx(0.3) and reason is None
    over = "\n".join(unique_lines[:5] + ["Menu"] * 5)  # 4 / 10
    assert rep_signals(over)[1] == "gopher_repetition:dup_line_frac"


def test_repetition_duplicate_paragraph_edges():
    paragraphs = [" ".join(unique_words(15, 15 * i)) for i in range(7)]
    repeated = " ".join(unique_words(3, 500))
    text = "\n\n".join(paragraphs + [repeated] * 4)  # 3 repeats / 11
    row, reason = rep_signals(text)
    assert row["gopher_dup_para_frac"] == pytest.approx(3 / 11)
    assert row["gopher_dup_para_char_frac"] == pytest.approx(3 * len(repeated) / len(text))
    assert reason is None
    text = "\n\n".join(paragraphs[:4] + [repeated] * 5)  # 4 / 9
    assert rep_signals(text)[1] == "gopher_repetition:dup_para_frac"
    # a long repeated paragraph: few repeats, many characters
    long = " ".join(unique_words(60, 900))
    text = "\n\n".join(paragraphs + [long, long])
    row, reason = rep_signals(text)
    assert row["gopher_dup_para_char_frac"] == pytest.approx(len(long) / len(text))
    assert row["gopher_dup_para_char_frac"] > 0.2 and reason == "gopher_repetition:dup_para_char_frac"


def test_repetition_top_ngram_signal_and_threshold():
    words = unique_words(80)
    text = " ".join(words[:20] + ["foo", "bar"] * 5 + words[20:])
    row, reason = rep_signals(text)
    # "foo bar" occurs 5 times ("bar foo" 4): 7 characters * 5
    assert row["gopher_top_2gram_char_frac"] == pytest.approx(35 / len(text))
    edge = row["gopher_top_2gram_char_frac"]
    assert rep_signals(text, top_2gram_char_frac=float(np.float32(edge)) + 1e-6)[1] is None
    assert rep_signals(text, top_2gram_char_frac=edge - 1e-3)[1] == "gopher_repetition:top_2gram_char_frac"


def test_repetition_duplicate_ngram_signal_and_threshold():
    words = unique_words(120)
    phrase = unique_words(10, 1000)
    text = " ".join(words[:40] + phrase + words[40:80] + phrase + words[80:])
    row, reason = rep_signals(text)
    repeated_chars = sum(len(w) for w in phrase)
    for n in range(5, 11):
        # left-to-right scan: a repeat of n words is counted, then the scan jumps past it,
        # so the repeated phrase counts in whole n-word steps
        covered = sum(len(w) for w in phrase[: n * (10 // n)])
        assert row[f"gopher_dup_{n}gram_char_frac"] == pytest.approx(covered / len(text)), n
    assert reason is None
    assert rep_signals(text, dup_5gram_char_frac=repeated_chars / len(text) - 1e-3)[1] == "gopher_repetition:dup_5gram_char_frac"
    spam = " ".join(words[:20] + phrase * 6)
    assert rep_signals(spam)[1] is not None


def test_repetition_handles_tiny_and_empty_text():
    rows, reasons = run(GopherRepetition, ["", "one", "two words", "\n\n\n"])
    assert len(rows) == 4 and all(0.0 <= rows[i][f"gopher_{s}"] <= 1.0 for i in range(4) for s in REPETITION_SIGNALS)


# --- C4 ------------------------------------------------------------------------------------

SENTENCE = "This is a complete sentence about the weather today."


def test_c4_min_sentences_edges():
    ok = "\n".join([SENTENCE] * 5)
    bad = "\n".join([SENTENCE] * 4 + ["Home", "Contact us"])
    rows, reasons = run(C4Quality, [ok, bad])
    assert [r["c4_sentences"] for r in rows] == [5, 4]
    assert reasons == [None, "c4:min_sentences"]


def test_c4_lorem_ipsum_and_curly_bracket_only_in_kept_lines():
    body = "\n".join([SENTENCE] * 5)
    texts = [body + "\nLorem ipsum dolor sit amet, consectetur.", body + "\nlorem ipsum in a title",
             body + "\nThe function f(x) { return x; } is short.", body + "\nvar x = {a: 1}"]
    rows, reasons = run(C4Quality, texts)
    assert reasons == ["c4:lorem_ipsum", None, "c4:curly_bracket", None]
    assert rows[0]["c4_lorem_ipsum"] and not rows[1]["c4_lorem_ipsum"] and rows[2]["c4_curly_bracket"]


def test_c4_line_removal():
    text = "\n".join([
        "Navigation menu", SENTENCE, "Please enable JavaScript to view the comments.", SENTENCE,
        "This site uses cookies to improve your experience.", "Too short.", SENTENCE, SENTENCE,
        "A sentence with a citation.[12]", "An unfinished thought...",
    ])
    rows, reasons = run(C4Quality, [text], remove_lines=True)
    assert reasons == [None]
    kept = rows[0]["text"].split("\n")
    assert kept == [SENTENCE] * 4 + ["A sentence with a citation."]
    assert rows[0]["c4_lines"] == 10
    assert rows[0]["c4_javascript_ratio"] == pytest.approx(0.1)
    assert rows[0]["c4_policy_ratio"] == pytest.approx(0.1)
    assert rows[0]["c4_no_terminal_punct_ratio"] == pytest.approx(0.2)
    assert rows[0]["c4_too_few_words_ratio"] == pytest.approx(0.1)
    assert rows[0]["c4_kept_lines_ratio"] == pytest.approx(0.5)
    untouched, _ = run(C4Quality, [text])
    assert untouched[0]["text"] == text


DIALOGUE = [
    "“Were it certain that Lady Catherine would think so,” said Mr. Collins, “I should be glad.”",
    "“Indeed, Mr. Collins, all praise of me will be unnecessary.”",
    "‘What a curious feeling!’",
    "‘Who are you?’ said the Caterpillar. ‘Tell me that, at least.’",
    "He went on with the story of the morning (it was not a long one.)",
]


def test_ends_sentence_sees_past_closing_quotes_and_brackets():
    from curate.stages.textstats import ends_sentence

    for line in DIALOGUE + ["Plain.", "“Yes!”", "(See the note.)", "「好。」", "He said: ‘Go.’ ”"]:
        assert ends_sentence(line, ".!?。"), line
    for line in ["Home » News »", "Chapter 1", "Necessary (12)", "Read more »", "“Yes”", ""]:
        assert not ends_sentence(line, ".!?。"), line


def test_c4_counts_quoted_dialogue_as_sentences():
    text = "\n".join(DIALOGUE)
    rows, reasons = run(C4Quality, [text])
    assert rows[0]["c4_no_terminal_punct_ratio"] == 0 and rows[0]["c4_sentences"] >= 5 and reasons == [None]
    rows, reasons = run(C4Quality, [text], sentence_end="datatrove")
    assert rows[0]["c4_no_terminal_punct_ratio"] == 1 and reasons == ["c4:min_sentences"]
    # an end quotation mark ends a line for C4 (its paper), an arrow or a trailing ellipsis does not
    lines = ["He called the piece “Love and Loss”", "Read the whole story here »", "Read more ...”", "And then…’"]
    rows, _ = run(C4Quality, ["\n".join(lines)], remove_lines=True, min_sentences=0)
    assert rows[0]["text"] == lines[0]


# --- FineWeb -------------------------------------------------------------------------------

def fw_line(i: int, end: str = "") -> str:
    return " ".join(unique_words(7, 7 * i)) + end


def test_fineweb_line_punct_edges():
    ok = "\n".join([fw_line(i, ".") for i in range(3)] + [fw_line(i) for i in range(3, 25)])  # 3/25 = 0.12
    bad = "\n".join([fw_line(i, ".") for i in range(2)] + [fw_line(i) for i in range(2, 25)])
    rows, reasons = run(FineWebQuality, [ok, bad])
    assert [r["fineweb_line_punct_ratio"] for r in rows] == pytest.approx([0.12, 0.08])
    assert reasons == [None, "fineweb:line_punct_ratio"]


def test_fineweb_line_punct_counts_closing_quotes():
    unpunctuated = [fw_line(i) for i in range(10, 20)]
    text = "\n".join(DIALOGUE[:2] + unpunctuated)  # 2 / 12 lines end a sentence before their quote
    rows, reasons = run(FineWebQuality, [text, text], max_newline_ratio=1.0)
    assert rows[0]["fineweb_line_punct_ratio"] == pytest.approx(2 / 12) and reasons[0] is None
    rows, reasons = run(FineWebQuality, [text], max_newline_ratio=1.0, sentence_end="datatrove")
    assert rows[0]["fineweb_line_punct_ratio"] == 0 and reasons == ["fineweb:line_punct_ratio"]


def test_fineweb_short_line_edges():
    long_lines = [fw_line(i, ".") for i in range(3)]
    ok = "\n".join(long_lines[:1] + ["Short line one.", "Short line two."])  # 2/3 <= 0.67
    bad = "\n".join(long_lines[:1] + ["Short one.", "Short two.", "Short three."])  # 3/4
    rows, reasons = run(FineWebQuality, [ok, bad], max_newline_ratio=1.0)
    assert [r["fineweb_short_line_ratio"] for r in rows] == pytest.approx([2 / 3, 0.75])
    assert reasons == [None, "fineweb:short_line_ratio"]


def test_fineweb_duplicate_line_chars_and_newlines():
    lines = [fw_line(i, ".") for i in range(30)]
    dup = "Read more."
    text = "\n".join(lines + [dup, dup])
    rows, reasons = run(FineWebQuality, [text])
    chars = len(text) - text.count("\n")
    assert rows[0]["fineweb_dup_line_char_ratio"] == pytest.approx(len(dup) / chars)
    assert reasons == [None]  # 10 / ~1500 characters < 0.01
    text = "\n".join(lines[:5] + [dup, dup])
    assert run(FineWebQuality, [text])[1] == ["fineweb:dup_line_char_ratio"]
    listy = "\n".join(f"{w} {w}." for w in unique_words(40))
    rows, reasons = run(FineWebQuality, [listy], max_short_line_ratio=1.0)
    assert rows[0]["fineweb_newline_ratio"] == pytest.approx(39 / len(split_words(listy)))
    assert reasons == ["fineweb:newline_ratio"]


def test_fineweb_empty_document():
    _, reasons = run(FineWebQuality, ["", "  \n \n"])
    assert reasons == ["fineweb:empty", "fineweb:empty"]


# --- code ------------------------------------------------------------------------------------

def test_code_rules_edges_only_for_code_rows():
    table = pa.table({
        "text": ["x = 1\n"] * 7,
        "source": ["code"] * 6 + ["cc"],
        "max_line_length": pa.array([1000, 1001, 50, 50, 50, 50, 5000], pa.int32()),
        "avg_line_length": pa.array([100.0, 20, 100.5, 20, 20, 20, 500], pa.float32()),
        "alphanum_fraction": pa.array([0.25, 0.5, 0.5, 0.24, 0.5, 0.5, 0.0], pa.float32()),
        "auto_generated": [False, False, False, False, True, False, True],
    })
    result = stage(CodeQuality).process(table)
    assert result.reasons.to_pylist() == [
        None, "code_quality:max_line_length", "code_quality:avg_line_length", "code_quality:alphanum_fraction",
        "code_quality:auto_generated", None, None]


def test_code_rules_compute_missing_signals_and_use_language_column():
    generated = "// Code generated by protoc. DO NOT EDIT.\npackage foo\n"
    minified = "var a=" + "1," * 3000 + "2;"
    table = pa.table({"text": [generated, minified, "def f():\n    return 1\n"], "source": ["gh", "gh", "gh"],
                      "language": ["go", "javascript", None]})
    result = stage(CodeQuality).process(table)
    assert result.reasons.to_pylist() == ["code_quality:auto_generated", "code_quality:max_line_length", None]
    assert result.table["max_line_length"].to_pylist()[1] == len(minified)


# --- Chinese -----------------------------------------------------------------------------------

DEFAULT_PIPELINE = (LangId, GopherQuality, GopherRepetition, C4Quality, FineWebQuality)
LANGID_FOR_TESTS = {"languages": ["en", "zh", "ja"]}


def pipeline_reasons(texts: list[str]) -> list[str | None]:
    table = pa.table({"text": texts})
    first: list[str | None] = [None] * len(texts)
    for cls in DEFAULT_PIPELINE:
        result = stage(cls, **(LANGID_FOR_TESTS if cls is LangId else {})).process(table)
        for i, reason in enumerate(result.reasons.to_pylist()):
            first[i] = first[i] or reason
        table = result.table
    return first


def test_chinese_wikipedia_passes_default_rules(shared_data):
    path = shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    reasons = pipeline_reasons(texts)
    assert sum(r is None for r in reasons) / len(texts) >= 0.90


JUNK_ZH = [
    # a navigation menu
    "首页\n新闻\n体育\n娱乐\n财经\n科技\n汽车\n房产\n游戏\n旅游\n教育\n健康\n登录\n注册\n联系我们\n关于我们",
    # a link list
    "\n".join(f"点击下载 第{i}集 高清 在线观看" for i in range(1, 30)),
    # keyword spam
    "免费领取 优惠券 免费领取 优惠券 " * 60,
    # a price list
    "\n".join(f"商品{i}  ￥{i * 13}.00  立即购买" for i in range(1, 40)),
]


def test_chinese_junk_fails():
    assert all(reason is not None for reason in pipeline_reasons(JUNK_ZH))


def test_chinese_words_come_from_segmentation():
    rows, _ = run(GopherQuality, ["我们今天在北京大学参加了一个关于人工智能的学术会议。"])
    assert 8 <= rows[0]["gopher_words"] <= 16  # jieba words, not 26 characters nor 1 "word"
    assert 1.2 <= rows[0]["gopher_mean_word_length"] <= 3.5


# --- bad input, params, schema -------------------------------------------------------------------

BAD = ["", "   ", "\x00\x01\x02\x03", "\ufffd" * 50, "a" * 200_000, "\n" * 500, "🙂" * 100, None]


@pytest.mark.parametrize("cls", [GopherQuality, GopherRepetition, C4Quality, FineWebQuality, CodeQuality])
def test_bad_input_never_crashes_and_types_are_fixed(cls):
    s = stage(cls)
    result = s.process(pa.table({"text": pa.array(BAD, pa.string()), "source": ["code"] * len(BAD)}))
    assert len(result.reasons) == len(BAD)
    empty = s.process(pa.table({"text": pa.array([], pa.string()), "source": pa.array([], pa.string())}))
    assert empty.table.schema == result.table.schema


@pytest.mark.parametrize("cls, raw, key", [
    (GopherQuality, {"min_doc_words": 200, "max_doc_words": 100}, "gopher_quality.min_doc_words"),
    (GopherQuality, {"max_symbol_word_ratio": 2}, "gopher_quality.max_symbol_word_ratio"),
    (GopherRepetition, {"dup_line_frac": -0.1}, "gopher_repetition.dup_line_frac"),
    (FineWebQuality, {"min_line_punct_ratio": 1.5}, "fineweb.min_line_punct_ratio"),
    (C4Quality, {"min_sentences": -1}, "c4.min_sentences"),
    (CodeQuality, {"min_alphanum_fraction": 3}, "code_quality.min_alphanum_fraction"),
    (GopherQuality, {"nope": 1}, "gopher_quality.nope"),
    (GopherQuality, {"alpha_words_unit": "spacy"}, "gopher_quality.alpha_words_unit"),
    (C4Quality, {"sentence_end": "loose"}, "c4.sentence_end"),
    (FineWebQuality, {"sentence_end": 1}, "fineweb.sentence_end"),
])
def test_bad_params_name_the_key(cls, raw, key):
    with pytest.raises(ConfigError) as err:
        build_params(cls.Params, raw, where=cls.name)
    assert err.value.key == key


def test_japanese_running_text_passes(shared_data):
    path = shared_data / "langid" / "lingua" / "sentences" / "ja.txt"
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = ["\n".join(lines[i:i + 8]) for i in range(0, len(lines) - 8, 8)]
    assert len(docs) >= 20
    reasons = pipeline_reasons(docs)
    assert sum(r is None for r in reasons) / len(docs) >= 0.9, reasons


def test_c4_line_removal_leaves_rejects_as_they_came():
    text = "Menu\n" + "\n".join([SENTENCE] * 3)
    rows, reasons = run(C4Quality, [text], remove_lines=True)
    assert reasons == ["c4:min_sentences"] and rows[0]["text"] == text
