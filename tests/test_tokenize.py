"""Tokenization into shards on Ray: format, exact ids, stats in DuckDB, resume after a partial or killed run."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import sentencepiece as spm
from click.testing import CliRunner

from curate.tests.corpora import train_book_tokenizer
from curate.tokenizers.cli import tokenize_command
from curate.tokenizers.corpus import input_files
from curate.tokenizers.encoder import Encoder
from curate.tokenizers.extend import append_pieces, load_proto
from curate.tokenizers.tokenize import TokenizeParams, read_tokens, stats_table, tokenize_corpus


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_path(shared_data, tmp_path_factory) -> str:
    return train_book_tokenizer(shared_data, str(tmp_path_factory.mktemp("tok")), vocab_size=6000,
                                sample_bytes=2_000_000)


def _docs(shared_data) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(str(shared_data / "langid" / "lingua" / "sentences" / "*.txt"))):
        lang = os.path.basename(path)[:-4]
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line]
        for i in range(0, min(len(lines), 60), 6):
            rows.append({"id": f"{lang}-{i}", "source": "web", "lang": lang, "text": "\n".join(lines[i:i + 6])})
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        for line in list(f)[:150]:
            record = json.loads(line)
            rows.append({"id": record["id"], "source": "wiki", "lang": "zh", "text": record["text"]})
    rows.append({"id": "empty", "source": "web", "lang": "en", "text": ""})
    rows.append({"id": "emoji", "source": "web", "lang": None, "text": "😀 \x00\x07 ctrl\r\n\ttab  "})
    return rows


def _curated_run(root, rows: list[dict], shards: int) -> str:
    docs = root / "docs"
    docs.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    per = -(-table.num_rows // shards)
    for k in range(shards):
        pq.write_table(table.slice(k * per, per), str(docs / f"part-{k:05d}.parquet"))
    return str(root)


def _load_all(output: str) -> dict[str, tuple[str, list[int]]]:
    """Every document in the shards: id -> (source, its tokens with the trailing EOS)."""
    stats = stats_table(output)
    out = {}
    for source in set(stats["source"].to_pylist()):
        for tokens, index in read_tokens(output, source):
            docs_file = os.path.join(output, source, os.path.basename(tokens.filename)[:-4] + ".docs.parquet")
            ids = pq.read_table(docs_file)["id"].to_pylist()
            assert len(index) == len(ids) + 1 and index[0] == 0 and index[-1] == len(tokens)
            for i, doc in enumerate(ids):
                out[doc] = (source, tokens[index[i]:index[i + 1]].tolist())
    return out


def test_encoder_matches_sentencepiece(model_path, shared_data):
    """The cached per-segment encoder is exact: same ids as SentencePiece on real text of 75 languages and more."""
    with open(model_path, "rb") as f:
        model = f.read()
    encoder = Encoder(model)
    assert encoder.cached
    texts = [row["text"] for row in _docs(shared_data)]
    for path in sorted(glob.glob(str(shared_data / "books" / "gutenberg" / "*-0.txt")))[:2]:
        with open(path, encoding="utf-8-sig") as f:
            texts.append(f.read())
    texts += ["  two leading", "trailing  ", " ", "\u2581literal\u2581marks", "a\u3000b", "x" * 5000 + " y"]
    expected = encoder.sp.encode(texts)
    assert encoder.encode(texts) == expected
    assert encoder.encode(texts) == expected  # second pass from the cache


def test_tokenize_curated_run(model_path, shared_data, tmp_path, ray_cluster):
    rows = _docs(shared_data)
    run = _curated_run(tmp_path / "run", rows, shards=3)
    output = str(tmp_path / "tokens")
    summary = tokenize_corpus(model_path, input_files([run]), output, TokenizeParams(workers=2))
    assert summary["tasks"] == summary["tasks_run"] == 3 and summary["docs_this_run"] == len(rows)
    assert summary["docs_total"] == len(rows) and summary["tasks_total"] == 3
    with open(os.path.join(output, "meta.json")) as f:
        meta = json.load(f)
    assert meta["dtype"] == "uint16" and meta["eos_id"] == 2 and meta["vocab_size"] == 6000
    sp = spm.SentencePieceProcessor(model_file=model_path)
    docs = _load_all(output)
    assert set(docs) == {row["id"] for row in rows}
    for row in rows:
        source, tokens = docs[row["id"]]
        assert source == row["source"]
        assert tokens[-1] == sp.eos_id() and sp.eos_id() not in tokens[:-1]
        assert tokens[:-1] == sp.encode(row["text"])
        assert sp.decode(tokens[:-1]) == row["text"]
    # stats: DuckDB reads them; token counts per source and language add up
    con = duckdb.connect()
    per_source = dict(con.execute(
        f"SELECT source, sum(tokens) FROM read_parquet('{output}/stats/*.parquet') GROUP BY source").fetchall())
    for source in ("web", "wiki"):
        assert per_source[source] == sum(len(t) for s, t in docs.values() if s == source)
    zh_docs, zh_bytes = con.execute(
        f"SELECT sum(docs), sum(bytes) FROM read_parquet('{output}/stats/*.parquet') WHERE lang = 'zh'").fetchone()
    zh_rows = [r for r in rows if r["lang"] == "zh"]
    assert zh_docs == len(zh_rows) and zh_bytes == sum(len(r["text"].encode()) for r in zh_rows)
    assert con.execute(f"SELECT count(DISTINCT lang) FROM read_parquet('{output}/stats/*.parquet')").fetchone()[0] >= 75


def test_resume_after_partial_run_and_crash(model_path, shared_data, tmp_path, ray_cluster):
    rows = _docs(shared_data)
    run = _curated_run(tmp_path / "run", rows, shards=4)
    files = input_files([run])
    output = str(tmp_path / "tokens")
    first = tokenize_corpus(model_path, files[:2], output, TokenizeParams(workers=2))
    assert first["tasks_run"] == 2
    done_before = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(output, "*", "*.bin"))}
    # a crash mid-task leaves temporary files and an uncommitted shard (no marker): both must be redone
    task = sorted(os.listdir(os.path.join(output, "done")))[0]
    os.remove(os.path.join(output, "done", task))
    stale = os.path.join(output, "web", f"{task}.bin.tmp-999")
    with open(stale, "wb") as f:
        f.write(b"partial")
    second = tokenize_corpus(model_path, files, output, TokenizeParams(workers=2))
    assert second["tasks_done_before"] == 1 and second["tasks_run"] == 3
    # a resumed run reports its own work and what the folder now holds in all
    assert second["docs_total"] == len(rows) > second["docs_this_run"] > 0
    assert second["tokens_total"] == int(stats_table(output)["tokens"].to_numpy().sum()) > second["tokens_this_run"]
    assert second["tasks_total"] == 4
    assert not os.path.exists(stale)
    untouched = [p for p in done_before if task not in p]
    assert untouched and all(os.stat(p).st_mtime_ns == done_before[p] for p in untouched)
    third = tokenize_corpus(model_path, files, output, TokenizeParams(workers=2))
    assert third["tasks_run"] == 0 and third["tasks_done_before"] == 4
    assert third["docs_this_run"] == 0 and third["docs_total"] == len(rows)
    clean = str(tmp_path / "clean")
    tokenize_corpus(model_path, files, clean, TokenizeParams(workers=2))
    assert _load_all(output) == _load_all(clean)
    assert stats_table(output).sort_by("task").equals(stats_table(clean).sort_by("task"))


def test_killed_run_resumes_to_the_same_tokens(model_path, shared_data, tmp_path, ray_cluster):
    """SIGKILL a `curate tokenize` process group once tasks are committed, rerun, compare with a clean run."""
    inputs = sorted(glob.glob(str(shared_data / "langid" / "lingua" / "sentences" / "*.txt")))[:24]
    output = str(tmp_path / "tokens")
    arguments = ["--tokenizer", model_path, "--output", output, "--format", "txt", *inputs]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen([sys.executable, "-m", "curate.tokenizers.cli", "tokenize", "--workers", "1",
                                *arguments], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done = os.path.join(output, "done")
    while time.time() < deadline and process.poll() is None:
        if os.path.isdir(done) and len([n for n in os.listdir(done) if not n.endswith(".tmp")]) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "tokenize finished (or never committed 2 tasks) before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    runner = CliRunner()
    rerun = runner.invoke(tokenize_command, arguments)
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)
    assert summary["tasks"] == len(inputs)
    assert summary["tasks_done_before"] + summary["tasks_run"] == len(inputs)
    # a Ray worker busy at the kill may still commit its task (whole) before it exits
    assert 2 <= summary["tasks_done_before"] < len(inputs)
    clean = str(tmp_path / "clean")
    result = runner.invoke(tokenize_command, ["--tokenizer", model_path, "--output", clean, "--format", "txt", *inputs])
    assert result.exit_code == 0, result.output
    assert _load_all(output) == _load_all(clean)


def test_uint32_when_vocabulary_needs_it(model_path, tmp_path, ray_cluster):
    """A vocabulary over 65,536 pieces gets uint32 shards; ids above 65,535 survive."""
    base = load_proto(model_path)
    rare = [chr(c) for c in range(0x20000, 0x20000 + 70_000 - len(base.pieces))]  # CJK extension B and later
    big = append_pieces(base, rare)
    big_path = str(tmp_path / "big.model")
    with open(big_path, "wb") as f:
        f.write(big.SerializeToString())
    text = "rare " + "".join(rare[-5:]) + " end"
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "r", "text": text}) + "\n")
    output = str(tmp_path / "tokens")
    tokenize_corpus(big_path, input_files([str(source)]), output, TokenizeParams(workers=1))
    with open(os.path.join(output, "meta.json")) as f:
        assert json.load(f)["dtype"] == "uint32"
    (tokens, index), = read_tokens(output)
    assert tokens.dtype == np.uint32 and int(tokens.max()) > 65535
    sp = spm.SentencePieceProcessor(model_file=big_path)
    assert sp.decode(tokens[:-1].tolist()) == text


def test_bad_inputs_and_cli_errors(model_path, tmp_path, ray_cluster):
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text('{"id": "a", "text": "fine"}\n{not json\n{"id": "b"}\n{"id": "c", "text": 5}\n')
    output = str(tmp_path / "tokens")
    summary = tokenize_corpus(model_path, input_files([str(jsonl)]), output, TokenizeParams(workers=1))
    assert summary["docs_this_run"] == summary["docs_total"] == 1
    assert sum(summary["skipped"].values()) == 3
    runner = CliRunner()
    other = tmp_path / "other.model"
    base = load_proto(model_path)
    other.write_bytes(append_pieces(base, ["\U00020010"]).SerializeToString())
    mixed = runner.invoke(tokenize_command, ["--tokenizer", str(other), "--output", output, str(jsonl)])
    assert mixed.exit_code == 1 and "another tokenizer" in mixed.output
    usage = runner.invoke(tokenize_command, ["--tokenizer", model_path, "--output", output, "--workers", "-1",
                                             str(jsonl)])
    assert usage.exit_code == 2
    missing = runner.invoke(tokenize_command, ["--tokenizer", model_path, "--output", output,
                                               str(tmp_path / "absent.jsonl")])
    assert missing.exit_code == 2 and "absent.jsonl" in missing.output
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(b"\x00not a model" * 10)
    failed = runner.invoke(tokenize_command, ["--tokenizer", str(corrupt), "--output", str(tmp_path / "t2"),
                                              str(jsonl)])
    assert failed.exit_code == 1 and "Error" in failed.output


def test_unreadable_input_fails_alone(model_path, tmp_path, ray_cluster):
    """A corrupt Parquet file fails its own task, with the reason; the good input is committed; exit code 1."""
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "g", "text": "a good document"}) + "\n")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + os.urandom(300))
    output = str(tmp_path / "tokens")
    result = CliRunner().invoke(tokenize_command, ["--tokenizer", model_path, "--output", output,
                                                   str(good), str(bad)])
    assert result.exit_code == 1 and "bad.parquet" in result.output and "failed" in result.output
    stats = stats_table(output)
    assert stats["docs"].to_pylist() == [1]
    assert len(os.listdir(os.path.join(output, "done"))) == 1


def _stream(output: str) -> tuple[list[int], list[str]]:
    """The whole token stream in read order, and the document ids in the same order."""
    tokens = [t.tolist() for t, _ in read_tokens(output)]
    ids = []
    for shard in sorted(set(stats_table(output)["shard"].to_pylist())):
        ids += pq.read_table(os.path.join(output, shard[: -len(".bin")] + ".docs.parquet"))["id"].to_pylist()
    return [tok for part in tokens for tok in part], ids


def test_big_parquet_file_is_cut_into_row_ranges(model_path, shared_data, tmp_path, ray_cluster):
    """One file, many tasks: the same tokens and ids as the file in one task, whatever the row groups; resumable."""
    rows = _docs(shared_data)
    table = pa.Table.from_pylist(rows)
    (tmp_path / "run" / "docs").mkdir(parents=True)
    many, one = tmp_path / "run" / "docs" / "many.parquet", tmp_path / "one.parquet"
    pq.write_table(table, many, row_group_size=37)  # a curate run's shard: two sources
    pq.write_table(table.drop(["id"]), one)  # one row group; ids come from the row numbers
    for path in (many, one):
        files = input_files([str(tmp_path / "run") if path == many else str(path)])
        whole = str(tmp_path / f"{path.stem}-whole")
        first = tokenize_corpus(model_path, files, whole, TokenizeParams(workers=2, task_mb=1000))
        assert first["tasks"] == 1
        cut = str(tmp_path / f"{path.stem}-cut")
        summary = tokenize_corpus(model_path, files, cut, TokenizeParams(workers=2, task_mb=0.02))
        assert summary["tasks"] >= 5 and summary["tasks_failed"] == {} and summary["docs_total"] == len(rows)
        assert _stream(cut) == _stream(whole)
        names = sorted(os.listdir(os.path.join(cut, "done")))
        assert all("-r" in n for n in names) and len(set(names)) == len(names)
        # a lost marker: only that part runs again, same tokens; another cut of the same folder is refused
        os.remove(os.path.join(cut, "done", names[2]))
        again = tokenize_corpus(model_path, files, cut, TokenizeParams(workers=1, task_mb=0.02))
        assert again["tasks_run"] == 1 and again["tasks_done_before"] == len(names) - 1
        assert _stream(cut) == _stream(whole)
        with pytest.raises(ValueError, match="--task-mb 0.02"):
            tokenize_corpus(model_path, files, cut, TokenizeParams(workers=1, task_mb=0.5))
    with open(os.path.join(str(tmp_path / "many-cut"), "meta.json")) as f:
        assert json.load(f)["task_mb"] == 0.02


def test_executors_give_the_same_tokens(model_path, shared_data, tmp_path, ray_cluster):
    """Ray, a process pool and this process write the same shards; the choice is said and reported."""
    from curate.tokenizers.tokenize import choose_executor

    run = _curated_run(tmp_path / "run", _docs(shared_data), shards=3)
    files = input_files([run])
    outputs, said = {}, []
    for executor in ("ray", "processes", "in-process"):
        out = str(tmp_path / executor)
        summary = tokenize_corpus(model_path, files, out, TokenizeParams(workers=2, executor=executor), say=said.append)
        assert summary["executor"] == executor and summary["tasks_run"] == 3
        outputs[executor] = {os.path.relpath(p, out): open(p, "rb").read()
                             for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if os.path.isfile(p)}
    assert outputs["ray"] == outputs["processes"] == outputs["in-process"]
    assert [line.split(" (")[0] for line in said] == ["executor: ray", "executor: processes", "executor: in-process"]
    ray.shutdown()  # auto, not connected to Ray: the choice follows the workers and the size
    try:
        pick = lambda **kw: choose_executor("auto", **{"workers": 2, "address": None, "tasks": 4, "text_mb": 50.0,
                                                       "limit_mb": 8.0, **kw})[0]
        assert pick() == "processes" and pick(workers=1) == "in-process" and pick(text_mb=3.0) == "in-process"
        assert pick(tasks=1) == "in-process" and pick(address="10.0.0.1:6379") == "ray"
        with pytest.raises(ValueError, match="cluster"):
            choose_executor("processes", workers=2, address="10.0.0.1:6379", tasks=4, text_mb=50, limit_mb=8)
        auto = tokenize_corpus(model_path, files, str(tmp_path / "auto"), TokenizeParams(workers=2))
        assert auto["executor"] == "in-process" and "small input" in auto["executor_why"]
    finally:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
