"""Detox stage: word lists against the C4/LDNOOBW rule on labelled toxicity data, clean text, the classifier."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from curate.classifier import TextClassifier, binary_metrics
from curate.params import ConfigError
from curate.stages.detox import Detox, read_labelled, train_toxicity_model
from curate.stages.detox_cli import detox as detox_cli
from curate.tests.corpora import book_paragraphs, chinese_paragraphs


def run_detox(texts, urls=None, **params) -> tuple[pa.Table, list]:
    stage = Detox.from_config(params)
    stage.ensure_setup()
    columns = {"text": pa.array(texts, pa.string())}
    if urls is not None:
        columns["url"] = pa.array(urls, pa.string())
    result = stage.process(pa.table(columns))
    reasons = result.reasons.to_pylist() if result.reasons is not None else [None] * len(texts)
    return result.table, reasons


def load_davidson(shared_data):
    with open(shared_data / "toxicity/davidson-en/labeled_data.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["tweet"] for r in rows], np.array([r["class"] != "2" for r in rows])  # hate or offensive


def load_cold(shared_data):
    with open(shared_data / "toxicity/cold-zh/dev.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["TEXT"] for r in rows], np.array([r["label"] == "1" for r in rows])


def c4_rule(texts, words, cjk: bool) -> np.ndarray:
    """The C4 bad-words rule: drop a document on any LDNOOBW match (substring for zh, whole words otherwise)."""
    if cjk:
        return np.array([any(w in t.lower() for w in words) for t in texts])
    pattern = re.compile(r"(?:\W|^)(%s)(?:\W|$)" % "|".join(map(re.escape, sorted(words, key=len, reverse=True))))
    return np.array([bool(pattern.search(t.lower())) for t in texts])


def ldnoobw(shared_data, lang):
    text = (shared_data / f"badwords/ldnoobw/{lang}.txt").read_text(encoding="utf-8")
    return [w.strip().lower() for w in text.splitlines() if w.strip()]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_default_lists_beat_c4_rule(shared_data, lang):
    texts, truth = load_davidson(shared_data) if lang == "en" else load_cold(shared_data)
    _, reasons = run_detox(texts)
    ours = binary_metrics(truth, np.array([r == "detox:wordlist" for r in reasons]))
    baseline_pred = c4_rule(texts, ldnoobw(shared_data, lang), cjk=lang == "zh")
    baseline = binary_metrics(truth, baseline_pred)
    our_fp = int(np.sum(~truth & np.array([r is not None for r in reasons])))
    baseline_fp = int(np.sum(~truth & baseline_pred))
    print(f"{lang}: ours {ours} FP {our_fp} | C4/LDNOOBW {baseline} FP {baseline_fp}")
    assert ours.f1 >= baseline.f1
    assert our_fp <= baseline_fp


def test_clean_text_is_rarely_rejected(shared_data):
    for name, paragraphs in (("books", book_paragraphs(shared_data)), ("chinese", chinese_paragraphs(shared_data))):
        table, reasons = run_detox(paragraphs)
        rejected = sum(r is not None for r in reasons)
        print(f"{name}: {rejected} of {len(paragraphs)} paragraphs rejected")
        assert len(paragraphs) > 1000
        assert rejected / len(paragraphs) < 0.01  # classic literature has its roosters and donkeys


def test_word_boundaries_wildcards_and_allow_lists():
    texts = [
        "The class passed the assessment in Scunthorpe.",  # ass / cunt inside words
        "what the fucking hell, you motherfucker",  # wildcard forms, counted once each
        "She graduated magna cum laude.",  # allow-listed phrase
        "病人出现恶心、呕吐和头晕。",  # 恶心 (disgusting) is listed; the symptom list is allow-listed
        "你这个傻逼，滚开",  # two terms
        "這個賤人",  # traditional form of a listed simplified term
        "你是傻逼fuck",  # Han next to Latin
        "",
        "你是傻b吗",  # a listed term mixing Han and Latin
    ]
    table, reasons = run_detox(texts)
    counts = table["toxic_count"].to_pylist()
    terms = table["toxic_terms"].to_pylist()
    assert counts == [0, 2, 0, 0, 2, 1, 2, 0, 1]
    assert terms[1] == ["fucking", "motherfuck"]
    assert terms[4] == ["傻逼", "滚开"]
    assert reasons == [None, "detox:wordlist", None, None, "detox:wordlist", "detox:wordlist", "detox:wordlist", None,
                       "detox:wordlist"]
    scores = table["toxic_score"].to_pylist()
    assert scores[4] == pytest.approx(2 / 7)  # per character for Chinese
    assert scores[1] == pytest.approx(2 / 6)  # per word


def test_score_threshold_keeps_long_documents_with_one_term():
    long_text = "The quick brown fox jumps over the lazy dog. " * 30 + "Damn shit."
    table, reasons = run_detox([long_text, "shit happens"])
    assert table["toxic_count"].to_pylist() == [1, 1]
    assert reasons == [None, "detox:wordlist"]
    _, c4_like = run_detox([long_text], score_threshold=0.0)
    assert c4_like == ["detox:wordlist"]


def test_user_lists_and_url_blocklist(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# house rules\nwidget*\n黑心厂\n", encoding="utf-8")
    allow = tmp_path / "allow.txt"
    allow.write_text("widgets are fine\n", encoding="utf-8")
    blocklist = tmp_path / "domains.txt"
    blocklist.write_text("bad.example\n0.0.0.0 ads.tracker.test\n*.casino.test\n", encoding="utf-8")
    texts = ["Buy widgets now", "widgets are fine", "这家黑心厂", "hello", "hello", "hello", "hello"]
    urls = ["https://a.test/", None, "http://x.test", "https://www.bad.example/page", "http://ads.tracker.test:8080/x",
            "https://sub.casino.test", "https://notbad.example/"]
    table, reasons = run_detox(texts, urls, languages=[], wordlists=[str(words)], allowlists=[str(allow)],
                               url_blocklists=[str(blocklist)], blocked_domains=["evil.test"])
    assert table["toxic_terms"].to_pylist()[:3] == [["widget"], [], ["黑心厂"]]
    assert table["url_blocked"].to_pylist() == [False, False, False, True, True, True, False]
    assert reasons == ["detox:wordlist", None, "detox:wordlist", "detox:url-blocklist", "detox:url-blocklist",
                       "detox:url-blocklist", None]


def test_bad_params_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="detox.wordlists"):
        Detox.from_config({"wordlists": [str(tmp_path / "missing.txt")]})
    with pytest.raises(ConfigError, match="detox.languages"):
        Detox.from_config({"languages": ["xx"]})
    with pytest.raises(ConfigError, match="detox.score_threshold"):
        Detox.from_config({"score_threshold": -1})


def test_column_types_are_fixed_on_empty_and_null_batches():
    stage = Detox.from_config({})
    stage.ensure_setup()
    for table in (pa.table({"text": pa.array([], pa.string())}), pa.table({"text": pa.array([None, "x"], pa.string())})):
        out = stage.process(table).table
        assert out.schema.field("toxic_score").type == pa.float32()
        assert out.schema.field("toxic_count").type == pa.int32()
        assert out.schema.field("toxic_terms").type == pa.list_(pa.string())


def write_jsonl(path, texts, labels):
    with open(path, "w", encoding="utf-8") as f:
        for text, label in zip(texts, labels):
            f.write(json.dumps({"text": text, "label": int(label)}, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("lang,goal", [("en", 0.85), ("zh", 0.65)])
def test_trained_classifier_reaches_goal_and_drives_the_stage(shared_data, tmp_path, lang, goal):
    if lang == "en":
        texts, truth = load_davidson(shared_data)
        source = tmp_path / "train.jsonl"
        write_jsonl(source, texts, truth)
        metrics = train_toxicity_model(str(source), str(tmp_path / "model.bin"))
    else:  # COLD's own CSV with its column names
        texts, truth = load_cold(shared_data)
        metrics = train_toxicity_model(str(shared_data / "toxicity/cold-zh/dev.csv"), str(tmp_path / "model.bin"),
                                       text_column="TEXT", label_column="label")
    print(lang, metrics)
    assert metrics.n_test >= 600
    assert metrics.f1 >= goal
    # small by default: fastText's own 2,000,000 x 64 table made 512 MB files whatever the data
    assert metrics.size == "small" and metrics.model_bytes < 20_000_000
    table, reasons = run_detox(texts[:200], model=str(tmp_path / "model.bin"), languages=[])
    probs = np.array(table["toxic_prob"].to_pylist())
    assert table.schema.field("toxic_prob").type == pa.float32()
    assert ((probs >= 0) & (probs <= 1)).all()
    assert [r == "detox:classifier" for r in reasons] == list(probs >= 0.5)
    assert np.mean((probs >= 0.5) == truth[:200]) > 0.8  # mostly training rows: a sanity check, not the metric


def test_train_cli_prints_metrics_and_rejects_bad_input(shared_data, tmp_path):
    texts, truth = load_davidson(shared_data)
    source = tmp_path / "small.csv"
    with open(source, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tweet", "toxic"])
        writer.writerows(zip(texts[:3000], truth[:3000].astype(int)))
    runner = CliRunner()
    ok = runner.invoke(detox_cli, ["train", "--input", str(source), "--output", str(tmp_path / "m.bin"),
                                   "--text-column", "tweet", "--label-column", "toxic"])
    assert ok.exit_code == 0, ok.output
    assert re.search(r"precision \d\.\d{3}\s+recall \d\.\d{3}\s+F1 \d\.\d{3}", ok.output)
    # Davidson is mostly toxic: the non-toxic minority is oversampled, and the command says so
    assert "oversampled label 0" in ok.output and re.search(r"model written to .*m\.bin \(\d+\.\d MB, --size small", ok.output)
    assert TextClassifier(str(tmp_path / "m.bin")).score(["you stupid bitch"]).shape == (1,)
    wrong_column = runner.invoke(detox_cli, ["train", "--input", str(source), "--output", str(tmp_path / "x.bin")])
    assert wrong_column.exit_code == 2 and "needs columns" in wrong_column.output
    missing = runner.invoke(detox_cli, ["train", "--input", str(tmp_path / "nope.jsonl"), "--output", "x.bin"])
    assert missing.exit_code == 2


def test_read_labelled_reports_bad_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "label": 1}\n{"text": "x", "label": 7}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: label must be 0 or 1"):
        read_labelled(str(bad))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok", "label": 1}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not JSON"):
        read_labelled(str(broken))


def test_lang_column_keeps_each_list_to_its_languages():
    texts = ["Ik weet niet hoe dat werkt, hoe kan dat?", "Das Brett ist dick.", "you dumb hoe", "Das Brett ist dick.",
             "この映画には色情的な場面がある。", "这是色情网站"]
    langs = ["nl", "de", "en", None, "ja", "zh"]
    stage = Detox.from_config({})
    result = stage.process(pa.table({"text": texts, "lang": langs}))
    assert result.table["toxic_terms"].to_pylist() == [[], [], ["hoe"], ["dick"], [], ["色情"]]
    everywhere = Detox.from_config({"respect_lang": False}).process(pa.table({"text": texts, "lang": langs}))
    assert everywhere.table["toxic_count"].to_pylist() == [2, 1, 1, 1, 1, 1]


def test_prefilter_never_drops_a_match(shared_data):
    """The RE2 pre-filter only skips documents the full Aho-Corasick scan would not match."""
    texts = load_davidson(shared_data)[0][:4000] + load_cold(shared_data)[0][:3000] + book_paragraphs(shared_data)[:3000]
    table = pa.table({"text": texts})
    fast = Detox.from_config({})
    fast.ensure_setup()
    full = Detox.from_config({})
    full.ensure_setup()
    full.matcher.prefilter = None
    a, b = fast.process(table), full.process(table)
    assert a.table.equals(b.table) and a.reasons.equals(b.reasons)
    assert sum(a.table["toxic_count"].to_pylist()) > 1000


def test_stage_pickles_for_workers(tmp_path):
    import pickle

    blocklist = tmp_path / "domains.txt"
    blocklist.write_text("bad.example\n", encoding="utf-8")
    stage = pickle.loads(pickle.dumps(Detox.from_config({"url_blocklists": [str(blocklist)]})))
    result = stage.process(pa.table({"text": ["fuck this", "fine"], "url": ["http://x.test", "https://bad.example/"]}))
    assert result.reasons.to_pylist() == ["detox:wordlist", "detox:url-blocklist"]
