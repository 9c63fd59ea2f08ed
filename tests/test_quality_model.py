"""GPT-3-style quality classifier: trained on real reference text vs real junk, Pareto rule, CLI."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.classifier import SIZES, TrainOptions
from curate.params import ConfigError, build_params
from curate.stages.quality import QualityClassifier, pareto_draws, pareto_keep, train_quality_model
from curate.stages.quality_cli import quality
from curate.stages.quality_cli import train as train_command
from curate.tests.corpora import chunk_text, read_text_file


def reference_texts(shared_data) -> list[str]:
    """Books and Wikipedia: what GPT-3 used as the positive class."""
    texts = []
    for path in sorted((shared_data / "books" / "gutenberg").glob("*.txt")):
        texts += chunk_text(read_text_file(str(path)), 1500)[5:-5]  # skip PG header/footer
    wiki = shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl"
    texts += [json.loads(line)["text"] for line in wiki.read_text(encoding="utf-8").splitlines()]
    return texts


def junk_texts(shared_data) -> list[str]:
    """Raw page text with its menus and scripts, and short social-media posts grouped into pages."""
    import lxml.html

    texts = []
    for path in sorted((shared_data / "html_extraction").rglob("*.html.gz")):
        if path.name == "expected.html.gz":
            continue
        try:
            tree = lxml.html.fromstring(gzip.open(path, "rb").read())
        except (ValueError, lxml.etree.ParserError):
            continue
        raw = "\n".join(line.strip() for line in tree.text_content().splitlines() if line.strip())
        texts += chunk_text(raw.replace("\n", "\n\n"), 1500)
    with open(shared_data / "toxicity" / "davidson-en" / "labeled_data.csv", encoding="utf-8") as f:
        tweets = [row["tweet"] for row in csv.DictReader(f)]
    texts += ["\n".join(tweets[i:i + 8]) for i in range(0, 4000, 8)]
    with open(shared_data / "toxicity" / "cold-zh" / "dev.csv", encoding="utf-8-sig") as f:
        posts = [row["TEXT"] for row in csv.DictReader(f)]
    texts += ["\n".join(posts[i:i + 8]) for i in range(0, 3000, 8)]
    return texts


@pytest.fixture(scope="module")
def corpus(shared_data):
    def spread(texts: list[str], n: int) -> list[str]:  # an even sample keeps every source represented
        step = max(1, len(texts) // n)
        return texts[::step][:n]

    return spread(reference_texts(shared_data), 1500), spread(junk_texts(shared_data), 1500)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    positive, negative = corpus
    model = str(tmp_path_factory.mktemp("quality") / "quality.bin")
    metrics = train_quality_model(positive, negative, model, TrainOptions(test_fraction=0.2, epoch=10))
    return model, metrics, positive, negative


def test_held_out_metrics_are_reasonable(trained):
    _, metrics, positive, negative = trained
    assert len(positive) >= 1000 and len(negative) >= 1000
    assert metrics.n_test >= 400
    assert metrics.precision >= 0.85 and metrics.recall >= 0.85 and metrics.f1 >= 0.85, metrics
    # the default model is small: a few MB, not fastText's 512 MB table that every worker would load
    assert metrics.size == "small" and metrics.model_bytes < 20_000_000
    assert metrics.test_docs == {1: 300, 0: 300} and not metrics.warnings
    print(metrics)


def stage(**raw) -> QualityClassifier:
    s = QualityClassifier(build_params(QualityClassifier.Params, raw, where="quality"))
    s.ensure_setup()
    return s


def test_stage_scores_and_threshold(trained, shared_data):
    model, _, positive, negative = trained
    texts = positive[:50] + negative[:50]
    table = pa.table({"id": [f"doc{i}" for i in range(100)], "text": texts})
    result = stage(model=model, mode="threshold", threshold=0.5).process(table)
    scores = np.array(result.table["quality_score"].to_pylist())
    assert result.table.schema.field("quality_score").type == pa.float32()
    assert scores[:50].mean() > 0.7 and scores[50:].mean() < 0.3
    reasons = result.reasons.to_pylist()
    assert reasons == [None if s >= 0.5 else "quality:threshold" for s in scores]
    labelled = stage(model=model, mode="score").process(table)
    assert labelled.reasons.null_count == 100


def test_pareto_rule_is_deterministic_per_id_and_gpt3_shaped(trained):
    model, _, positive, negative = trained
    ids = [f"doc{i}" for i in range(100)]
    texts = positive[:50] + negative[:50]
    s = stage(model=model, mode="pareto")
    first = s.process(pa.table({"id": ids, "text": texts})).reasons.to_pylist()
    # another batch order and batch split: the same documents get the same decisions
    order = list(reversed(range(100)))
    second = []
    for lo in (0, 37):
        part = order[lo:lo + 37] if lo == 0 else order[37:]
        out = s.process(pa.table({"id": [ids[i] for i in part], "text": [texts[i] for i in part]})).reasons.to_pylist()
        second += list(zip(part, out))
    assert [r for _, r in sorted(second)] == first
    scores = s.process(pa.table({"id": ids, "text": texts})).table["quality_score"].to_numpy()
    draws = pareto_draws(ids, 9.0, seed=0)
    assert first == [None if d > 1 - q else "quality:pareto" for d, q in zip(draws, scores)]
    kept_good = sum(r is None for r in first[:50])
    kept_junk = sum(r is None for r in first[50:])
    # P(keep) = (2 - score) ** -9: about 0.9 at score 0.99, 0.002 at score 0
    expected_good = float(np.sum((2.0 - scores[:50].astype(np.float64)) ** -9))
    assert abs(kept_good - expected_good) <= 3 * np.sqrt(expected_good) + 1
    assert kept_junk < kept_good
    # a different seed gives a different but still reproducible sample
    draws_0, draws_1 = pareto_draws(ids, 9.0, seed=0), pareto_draws(ids, 9.0, seed=1)
    assert not np.allclose(draws_0, draws_1)
    assert np.array_equal(pareto_draws(ids, 9.0, seed=1), draws_1)


def test_pareto_draws_follow_numpy_pareto():
    ids = [f"id-{i}" for i in range(20_000)]
    ours = pareto_draws(ids, 9.0)
    theirs = np.random.default_rng(0).pareto(9.0, len(ids))
    for q in (0.1, 0.5, 0.9, 0.99):
        exact = (1 - q) ** (-1 / 9.0) - 1  # Lomax quantile: what numpy.random.pareto draws
        assert abs(np.quantile(ours, q) - exact) < 0.05 * exact
        assert abs(np.quantile(theirs, q) - exact) < 0.05 * exact
    # GPT-3's rule keeps every document with score 1 and P(pareto > 1) = 2**-9 of score-0 ones
    assert pareto_keep(np.ones(len(ids)), ids).all()
    assert 0.001 < pareto_keep(np.zeros(len(ids)), ids).mean() < 0.003


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError):
        build_params(QualityClassifier.Params, {}, where="quality")
    s = QualityClassifier(build_params(QualityClassifier.Params, {"model": str(tmp_path / "none.bin")}, where="quality"))
    with pytest.raises(FileNotFoundError):
        s.ensure_setup()


def test_cli_train_from_files(corpus, shared_data, tmp_path):
    positive, negative = corpus
    pos_file = tmp_path / "reference.jsonl"
    pos_file.write_text("\n".join(json.dumps({"text": t}) for t in positive[-300:]), encoding="utf-8")
    run_dir = tmp_path / "crawl-run"
    (run_dir / "docs").mkdir(parents=True)
    pq.write_table(pa.table({"text": negative[:400]}), run_dir / "docs" / "part-0.parquet")
    output = tmp_path / "model.bin"
    runner = CliRunner()
    book = str(shared_data / "books" / "gutenberg" / "pg84-0.txt")
    result = runner.invoke(quality, ["train", "--positive", str(pos_file), "--positive", book,
                                     "--negative", str(run_dir), "--output", str(output), "--epoch", "5"])
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "recall" in result.output and output.exists()
    lines = result.output.splitlines()
    assert f"positive {pos_file}: 300 documents from 1 file(s) (1 jsonl)" in lines
    assert any(line.startswith(f"positive {book}: ") and "(1 txt)" in line for line in lines)
    assert f"negative {run_dir}: 400 documents from 1 file(s) (1 parquet)" in lines

    missing = runner.invoke(quality, ["train", "--positive", str(tmp_path / "nothing"), "--negative", str(run_dir),
                                      "--output", str(output)])
    assert missing.exit_code == 2 and "no such file or directory" in missing.output
    no_negative = runner.invoke(quality, ["train", "--positive", str(pos_file), "--output", str(output)])
    assert no_negative.exit_code == 2


def test_gzipped_book_in_a_folder_is_read(shared_data, tmp_path):
    """A .txt.gz book in a --positive folder is read (as the books reader reads it), and the count says so."""
    book = shared_data / "books" / "gutenberg" / "pg84-0.txt"
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "frankenstein.txt.gz").write_bytes(gzip.compress(book.read_bytes()))
    (folder / "NOTES").write_text("not a book\n")
    negative = tmp_path / "crawl.jsonl"
    with open(shared_data / "toxicity" / "davidson-en" / "labeled_data.csv", encoding="utf-8") as f:
        tweets = [row["tweet"] for row in csv.DictReader(f)][:600]
    negative.write_text("".join(json.dumps({"text": "\n".join(tweets[i:i + 3])}) + "\n" for i in range(0, 600, 3)))
    runner = CliRunner()
    result = runner.invoke(quality, ["train", "--positive", str(folder), "--negative", str(negative),
                                     "--output", str(tmp_path / "m.bin"), "--epoch", "3"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("positive "))
    plain = runner.invoke(quality, ["train", "--positive", str(book), "--negative", str(negative),
                                    "--output", str(tmp_path / "p.bin"), "--epoch", "3"])
    expected = next(line for line in plain.output.splitlines() if line.startswith("positive ")).split(": ")[1]
    docs = int(expected.split(" documents")[0].replace(",", ""))
    assert docs > 100 and f": {docs:,} documents from 1 file(s) (1 txt)" in line
    assert "1 file(s) of no known suffix not read (NOTES)" in line


def test_tiny_unbalanced_set_warns_and_is_balanced(shared_data, tmp_path):
    """6 positive against 2,000 negative documents: warned twice, oversampled, a positive held out."""
    wiki = shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl"
    six = tmp_path / "six.jsonl"
    six.write_text("".join(wiki.read_text(encoding="utf-8").splitlines(keepends=True)[:6]), encoding="utf-8")
    with open(shared_data / "toxicity" / "davidson-en" / "labeled_data.csv", encoding="utf-8") as f:
        tweets = [row["tweet"] for row in csv.DictReader(f)][:2000]
    negative = tmp_path / "tweets.jsonl"
    negative.write_text("".join(json.dumps({"text": t}) + "\n" for t in tweets))
    result = CliRunner().invoke(train_command, ["--positive", str(six), "--negative", str(negative),
                                                "--output", str(tmp_path / "m.bin"), "--epoch", "3"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert any("only 6 positive documents" in w for w in warnings), result.output
    assert any("unbalanced: 2,000 negative vs 6 positive" in w and "oversampling" in w for w in warnings)
    assert "held out 1 positive and 200 negative documents" in result.output
    assert "its 5 training documents repeated to 1,800 lines" in result.output
    unbalanced = CliRunner().invoke(train_command, ["--positive", str(six), "--negative", str(negative), "--balance",
                                                    "none", "--output", str(tmp_path / "n.bin"), "--epoch", "3"])
    assert unbalanced.exit_code == 0 and "(not balanced)" in unbalanced.output
    assert "--balance none" in unbalanced.output


def test_large_size_is_fasttexts_table(corpus, tmp_path):
    """--size large keeps the model curate trained before: fastText's 2,000,000 x 64 table."""
    import floret

    positive, negative = corpus
    output = str(tmp_path / "large.bin")
    report = train_quality_model(positive[:100], negative[:100], output, TrainOptions(size="large", epoch=2))
    args = floret.load_model(output).f.getArgs()
    assert (args.bucket, args.dim) == (SIZES["large"]["bucket"], SIZES["large"]["dim"]) == (2_000_000, 64)
    assert report.model_bytes > 500_000_000 and report.size == "large"


def test_vocabulary_cap_keeps_the_most_frequent_words(shared_data):
    """The small model's word cap: the minCount chosen keeps at most max_words distinct words, and as many
    of the most frequent ones as ties allow."""
    from collections import Counter

    from curate.classifier import _min_count_for, prepare_text

    with open(shared_data / "toxicity" / "davidson-en" / "labeled_data.csv", encoding="utf-8") as f:
        lines = [f"__label__{int(row['class'] != '2')} {prepare_text(row['tweet'])}" for row in csv.DictReader(f)]
    counts = Counter(token for line in lines for token in line.split(" ")[1:])
    assert _min_count_for(lines, None) == 1 and _min_count_for(lines, len(counts)) == 1
    for cap in (100, 2000, len(counts) - 1):
        m = _min_count_for(lines, cap)
        kept = sum(1 for n in counts.values() if n >= m)
        assert 0 < kept <= cap < sum(1 for n in counts.values() if n >= m - 1)
