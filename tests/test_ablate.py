"""`curate ablate` on real text: the table, equal mixtures equal, resume after kill -9, bad input, statistics.

One small real set-up is built once (module fixture): a SentencePiece tokenizer trained on Gutenberg
paragraphs, three sources tokenized on Ray (English book paragraphs, Chinese Wikipedia passages that the
English tokenizer spells in bytes, and held-out book paragraphs that no mixture selects), and mixtures of
64-token samples: ``a`` (books 0.7, wiki 0.3), ``a2`` (the same file built into another folder) and ``b``
(books 0.3, wiki 0.7). The ``tiny`` model trains 12 steps of 1,024 tokens on each in fp32 on the CPU.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from curate.cli import main as curate_main  # noqa: E402
from curate.tests.corpora import book_paragraphs, chinese_paragraphs  # noqa: E402
from curate.trainer.compare import Scores, compare, paired_bootstrap, t_interval, t_quantile  # noqa: E402

TOKENS = "12288"  # 12 steps of 1,024 tokens (16 samples of 64)
TRAIN = ["global_batch_tokens=1024", "micro_batch=16", "lr=3e-3", "warmup_steps=2", "eval_every=0",
         "checkpoint_every=4", "keep_checkpoints=1", "threads=1", "tensorboard=false"]


def _sets(*extra: str) -> list[str]:
    out = []
    for item in [*TRAIN, *extra]:
        out += ["--set", item]
    return out


def invoke(*args: str):
    return CliRunner().invoke(curate_main, list(args))


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    from curate.mixtures import build_mixture, load_config
    from curate.tokenizers.corpus import input_files
    from curate.tokenizers.tokenize import TokenizeParams, tokenize_corpus
    from curate.tokenizers.train import TrainParams, train_tokenizer

    root = tmp_path_factory.mktemp("ablate")
    paragraphs = book_paragraphs(shared_data)
    books, wiki, heldout = root / "books.jsonl", root / "wiki.jsonl", root / "heldout.jsonl"
    with open(books, "w", encoding="utf-8") as f:
        for k in range(0, 1200, 20):
            f.write(json.dumps({"id": f"book-{k}", "text": "\n\n".join(paragraphs[k:k + 20])}) + "\n")
    with open(wiki, "w", encoding="utf-8") as f:
        for k, text in enumerate(chinese_paragraphs(shared_data)[:150]):
            f.write(json.dumps({"id": f"wiki-{k}", "text": text}, ensure_ascii=False) + "\n")
    with open(heldout, "w", encoding="utf-8") as f:
        for k in range(2000, 2200, 5):
            f.write(json.dumps({"id": f"heldout-{k}", "text": "\n\n".join(paragraphs[k:k + 5])}) + "\n")
    book_files = input_files([str(books)], "jsonl", "books")
    train_tokenizer(book_files, str(root / "tok"),
                    TrainParams(vocab_size=600, sample_bytes=300_000, heldout_fraction=0.0, threads=2))
    tokenizer = str(root / "tok" / "tokenizer.model")
    files = book_files + input_files([str(wiki)], "jsonl", "wiki") + input_files([str(heldout)], "jsonl", "heldout")
    summary = tokenize_corpus(tokenizer, files, str(root / "tokens"), TokenizeParams(workers=2))
    assert not summary["tasks_failed"]
    for name, weights in (("a", (0.7, 0.3)), ("b", (0.3, 0.7))):
        config = {"tokens": "20k", "seq_len": 64, "seed": 1, "validation": 0.05, "max_epochs": 20,
                  "paths": [str(root / "tokens")],
                  "components": [{"name": "books", "source": "books", "weight": weights[0]},
                                 {"name": "wiki", "source": "wiki", "weight": weights[1]}]}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
        build_mixture(load_config(str(root / f"{name}.yaml")), str(root / name))
    build_mixture(load_config(str(root / "a.yaml")), str(root / "a2"))
    return {"root": root, "tokenizer": tokenizer, "heldout": str(heldout), "tokens": str(root / "tokens"),
            **{name: str(root / name) for name in ("a", "a2", "b")}}


@pytest.fixture(scope="module")
def ablation(setup):
    """a, a2 and b, two seeds, evaluated on the held-out JSONL and the held-out token source."""
    out = setup["root"] / "abl"
    result = invoke("ablate", f"a={setup['a']}", f"a2={setup['a2']}", f"b={setup['b']}", "--tokens", TOKENS,
                    "--seeds", "2", "--eval", f"text={setup['heldout']}",
                    "--eval", os.path.join(setup["tokens"], "heldout"), "--val-samples", "40", "-o", str(out),
                    "--no-progress", *_sets())
    assert result.exit_code == 0, result.output
    return out, result.output


def _summary(out: Path) -> dict[tuple[str, str], dict]:
    rows = pq.read_table(out / "results.parquet").to_pylist()
    return {(r["eval_set"], r["mixture"]): r for r in rows if r["seed"] is None}


def test_table_shape_and_equal_mixtures_give_equal_losses(ablation):
    out, output = ablation
    rows = pq.read_table(out / "results.parquet").to_pylist()
    sets = ["text", "heldout", "val:a"]  # val:a2 and val:b are the same samples (see below)
    assert sorted({r["eval_set"] for r in rows}) == sorted(sets)
    # per set: 3 mixtures x (2 seeds + 1 summary)
    assert len(rows) == len(sets) * 3 * 3
    for name in ("a", "a2", "b"):
        for k in (0, 1):
            assert (out / f"{name}-seed{k}" / "done.json").is_file()
    by_seed = {(r["eval_set"], r["mixture"], r["seed"]): r for r in rows}
    for s in sets:
        for k in (0, 1):
            # the same mixture (built twice) and the same seed: the same weights, the same losses, bitwise
            assert by_seed[(s, "a2", k)]["loss"] == by_seed[(s, "a", k)]["loss"]
            assert by_seed[(s, "a2", k)]["delta_vs_first"] == 0.0
        # seeds give different models
        assert by_seed[(s, "a", 0)]["loss"] != by_seed[(s, "a", 1)]["loss"]
    summary = _summary(out)
    for s in sets:
        assert summary[(s, "a")]["verdict"] == "a: the baseline"
        assert summary[(s, "a2")]["verdict"].startswith("a2: the same loss as a")
        b = summary[(s, "b")]
        assert b["ci_low"] <= b["delta_vs_first"] <= b["ci_high"]
        assert b["ci_method"] == "95% t interval over 2 seeds"
        assert b["verdict"].startswith("b")
    # b trains on more Chinese: better on the validation split (books and wiki) than on English text
    assert summary[("val:a", "b")]["delta_vs_first"] < summary[("text", "b")]["delta_vs_first"]
    assert "Δ loss vs a" in output


def test_scores_are_per_document_and_bits_per_byte_counts_text_bytes(ablation, setup):
    out, _ = ablation
    body = json.loads((out / "results.json").read_text())
    texts = [json.loads(line)["text"] for line in open(setup["heldout"], encoding="utf-8")]
    text_set = next(e for e in body["eval_sets"] if e["name"] == "text")
    assert text_set["units"] == len(texts)
    assert text_set["bytes"] == sum(len(t.encode("utf-8")) for t in texts)
    # the same documents through `curate tokenize`: decoded bytes equal the tokenizer's own byte count
    token_set = next(e for e in body["eval_sets"] if e["name"] == "heldout")
    stats = pq.read_table(os.path.join(setup["tokens"], "stats")).to_pylist()
    assert token_set["bytes"] == sum(r["bytes"] for r in stats if r["source"] == "heldout")
    assert token_set["tokens"] == text_set["tokens"]  # same text, same tokenizer: the same ids
    scores = pq.read_table(out / "evals" / "a-seed0" / "text.parquet").to_pylist()
    assert len(scores) == len(texts) and all(r["nats"] > 0 for r in scores)
    row = next(r for r in pq.read_table(out / "results.parquet").to_pylist()
               if r["eval_set"] == "text" and r["mixture"] == "a" and r["seed"] == 0)
    nats = sum(r["nats"] for r in scores)
    assert row["loss"] == pytest.approx(nats / sum(r["tokens"] for r in scores))
    assert row["bits_per_byte"] == pytest.approx(nats / math.log(2) / sum(r["bytes"] for r in scores))
    # both held-out sets were checked against the mixtures' training documents: none is in them
    assert all(n == 0 for e in body["eval_sets"] for n in e["documents_trained_on"].values())


def test_validation_splits_of_the_same_documents_are_scored_once(ablation):
    out, output = ablation
    body = json.loads((out / "results.json").read_text())
    # a, a2 and b select the same documents (other weights): the same held-out samples, one set
    assert [e["name"] for e in body["eval_sets"] if e["kind"] == "val"] == ["val:a"]
    assert "val:a2 is the same set of samples as val:a" in " ".join(body["notes"])
    assert "val:a:" in output and "🅰" not in output  # names are printed as text, not as emoji codes


def test_killed_ablation_resumes_and_reuses_finished_runs(ablation, setup, tmp_path):
    """kill -9 in the middle of the second run; the same command finishes it, reusing the first run."""
    reference, _ = ablation
    out = tmp_path / "abl"
    args = ["ablate", f"a={setup['a']}", f"b={setup['root'] / 'b.yaml'}", "--tokens", TOKENS, "--seeds", "1",
            "--eval", f"text={setup['heldout']}", "--val-samples", "0", "-o", str(out), "--no-progress",
            *_sets("checkpoint_every=2")]
    cli = str(Path(sys.executable).parent / "curate")
    proc = subprocess.Popen([cli, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    marker = out / "b-seed0" / "checkpoints" / "step-000002"
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), proc.stdout.read().decode()[-2000:]
    killed_mid_run = not (out / "b-seed0" / "done.json").exists()
    assert not (out / "results.json").exists()
    a_metrics = (out / "a-seed0" / "metrics.jsonl").read_text()

    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "a-seed0" in result.output and "already trained" in result.output
    assert (out / "a-seed0" / "metrics.jsonl").read_text() == a_metrics  # not retrained
    # the mixture file was built into the ablation folder with the ablation's budget
    built = json.loads((out / "mixtures" / "b" / "mixture.json").read_text())
    assert built["tokens"] == int(TOKENS) and built["file"] == str(setup["root"] / "b.yaml")
    steps = [json.loads(line)["step"] for line in open(out / "b-seed0" / "metrics.jsonl")]
    assert steps == list(range(1, 13)), (killed_mid_run, steps)  # every step once, the resumed ones included
    # a-seed0 is the reference ablation's a-seed0: the same per-document scores, bit for bit
    ours = pq.read_table(out / "evals" / "a-seed0" / "text.parquet")["nats"].to_pylist()
    theirs = pq.read_table(reference / "evals" / "a-seed0" / "text.parquet")["nats"].to_pylist()
    assert ours == theirs
    # one seed: the interval is a paired bootstrap over the evaluation documents
    b = _summary(out)[("text", "b")]
    assert b["ci_method"] == "95% paired bootstrap over 40 units"
    assert b["ci_low"] <= b["delta_vs_first"] <= b["ci_high"] and b["ci_low"] < b["ci_high"]
    assert "one seed" in b["verdict"]
    # a finished ablation reruns as a no-op that rewrites the same table
    before = pq.read_table(out / "results.parquet")
    again = invoke(*args)
    assert again.exit_code == 0 and again.output.count("already trained") == 2
    assert pq.read_table(out / "results.parquet").equals(before)
    # another training config in the same folder is refused: its runs would not be comparable
    other = invoke(*args, "--set", "lr=1e-3")
    assert other.exit_code == 2 and "train.lr was 0.003, now 0.001" in other.output, other.output


def test_results_are_queryable_with_duckdb(ablation):
    import duckdb

    out, _ = ablation
    rows = duckdb.sql(f"SELECT mixture, delta_vs_first, verdict FROM '{out}/results.parquet' "
                      "WHERE seed IS NULL AND eval_set = 'text' ORDER BY mixture").fetchall()
    assert [r[0] for r in rows] == ["a", "a2", "b"] and rows[1][1] == 0.0


# ---------------------------------------------------------------------------------------------------- bad input


def _synthetic_mixture(root: Path) -> str:
    """A mixture of generated tokens from a different (synthetic) tokenizer."""
    from curate.mixtures import build_mixture
    from curate.mixtures.config import from_dict
    from curate.tests.test_mixture_format import write_meta, write_sized_source

    write_meta(str(root / "tokens"), vocab_size=600)
    write_sized_source(str(root / "tokens"), "web", 30_000)
    build_mixture(from_dict({"tokens": "20k", "seq_len": 64, "paths": [str(root / "tokens")],
                             "components": [{"name": "web", "source": "web", "weight": 1.0}]}), str(root / "mix"))
    return str(root / "mix")


@pytest.mark.parametrize("case", ["one-mixture", "unknown-eval", "no-eval", "tokenizers", "eval-tokenizer",
                                  "budget-built",
                                  "budget-epochs", "budget-file", "not-whole-steps", "seed-set", "bad-name"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(setup, tmp_path, case):
    a, b = f"a={setup['a']}", f"b={setup['b']}"
    heldout = ["--eval", setup["heldout"]]
    other = _synthetic_mixture(tmp_path / "other") if case in ("tokenizers", "eval-tokenizer") else ""
    args, message = {
        "one-mixture": ([a, *heldout], "two or more mixtures, got 1"),
        "unknown-eval": ([a, b, "--eval", str(tmp_path / "nope.jsonl")], "nope.jsonl: no such file or directory"),
        "no-eval": ([a, b], "at least one held-out evaluation set"),
        "tokenizers": ([a, f"other={other}", *heldout], "not comparable"),
        "eval-tokenizer": ([a, b, "--eval", str(tmp_path / "other" / "tokens")], "not the mixtures' tokenizer"),
        "budget-built": ([a, b, *heldout, "--tokens", "40960"], "rebuild it with tokens: 40960"),
        "budget-epochs": ([a, b, *heldout, "--tokens", "10240000"], "under its max_epochs"),
        "budget-file": ([a, f"b={setup['root'] / 'b.yaml'}", *heldout, "--tokens", "10240000"], "max_epochs"),
        "not-whole-steps": ([a, b, *heldout, "--tokens", "5000"], "use 4,096 or 5,120"),
        "seed-set": ([a, b, *heldout, "--set", "seed=3"], "--seeds"),
        "bad-name": ([f"evals={setup['a']}", b, *heldout], "not a usable name"),
    }[case]
    if "--tokens" not in args:
        args = [*args, "--tokens", TOKENS]
    out = tmp_path / "out"
    result = invoke("ablate", *args, "-o", str(out), *_sets())
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output  # (the console wraps long lines)
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------- statistics


def test_t_quantiles_and_interval():
    assert t_quantile(0.95, 2) == 4.303 and t_quantile(0.95, 30) == 2.042
    assert t_quantile(0.95, 60) == pytest.approx(2.000, abs=1e-3)  # beyond the table: Cornish-Fisher
    assert t_quantile(0.99, 1000) == pytest.approx(2.581, abs=1e-3)
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.303 * 1.0 / math.sqrt(3))


def test_paired_bootstrap_pairs_the_units():
    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 500, size=200)
    base = Scores(tokens * rng.uniform(2.0, 4.0, size=200), tokens, tokens * 4)
    # b is a fixed 0.1 nats/token better on every document: a paired interval is that, exactly
    better = Scores(base.nats - 0.1 * tokens, tokens, tokens * 4)
    delta, low, high = paired_bootstrap(base, better)
    assert delta == pytest.approx(-0.1) and low == pytest.approx(-0.1) and high == pytest.approx(-0.1)
    noisy = Scores(base.nats + tokens * rng.normal(0, 0.3, size=200), tokens, tokens * 4)
    delta, low, high = paired_bootstrap(base, noisy)
    assert low < delta < high and high - low < 0.2
    with pytest.raises(ValueError, match="same units"):
        paired_bootstrap(base, Scores(base.nats[:10], tokens[:10], tokens[:10]))


def test_compare_rows_and_verdicts():
    tokens = np.full(50, 100)
    nats = np.linspace(300, 400, 50)
    scores = {"raw": {0: Scores(nats, tokens, tokens * 3), 1: Scores(nats + 10, tokens, tokens * 3)},
              "curated": {0: Scores(nats - 20, tokens, tokens * 3), 1: Scores(nats - 8, tokens, tokens * 3)}}
    rows = compare(scores)
    assert [(r["mixture"], r["seed"]) for r in rows] == [("raw", 0), ("raw", 1), ("raw", None),
                                                        ("curated", 0), ("curated", 1), ("curated", None)]
    curated = rows[-1]
    assert curated["delta_vs_first"] == pytest.approx(-0.19)  # (-0.2 - 0.18) / 2 nats per token
    assert curated["ci_low"] < curated["ci_high"] < 0
    assert curated["verdict"].startswith("curated is better than raw: -0.1900 nats/token")
    assert curated["bits_per_byte"] == pytest.approx(curated["loss"] / math.log(2) / 3)
    assert curated["delta_bits_per_byte"] == pytest.approx(-0.19 / math.log(2) / 3)


def test_dashboard_draws_the_ablation_folder(ablation, setup, tmp_path):
    """`curate dashboard OUT --train DIR`: every run's curves, and the results table with its verdicts."""
    from curate.dashboards.report import build

    out, _ = ablation
    run = tmp_path / "run"
    cli = str(Path(sys.executable).parent / "curate")
    done = subprocess.run([cli, "run", "--input", setup["heldout"], "--format", "jsonl", "--stages", "length",
                           "--output", str(run), "--workers", "1", "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = build(str(run), train=[str(out)], params=None)
    assert "training" in report.panels and "ablation" in report.panels
    for name in ("a-seed0", "a2-seed1", "b-seed1"):
        assert name in report.html
    verdict = _summary(out)[("text", "b")]["verdict"]
    assert html.escape(verdict) in report.html
    assert "val:a" in report.html
