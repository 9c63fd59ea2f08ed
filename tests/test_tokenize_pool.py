"""`curate tokenize --executor processes` (#16.4): this process works beside the pool's processes.

With two workers, one task runs in this process and one in a pool process; whoever finishes takes the next.
What must hold: the same files, byte for byte, as a run in this process alone, the ids SentencePiece's own,
tasks spread over both processes, a failing input failing alone, and a pool process killed mid-run losing
only its own task (this process finishes the rest; a rerun redoes the lost one to the same tokens).
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from curate.tests.corpora import train_book_tokenizer
from curate.tokenizers.corpus import input_files
from curate.tokenizers.tokenize import TokenizeParams, read_tokens, tokenize_corpus


@pytest.fixture(scope="module")
def model_path(shared_data, tmp_path_factory) -> str:
    return train_book_tokenizer(shared_data, str(tmp_path_factory.mktemp("tok-pool")))


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory) -> str:
    """Six Parquet files of unseen text: Chinese Wikipedia paragraphs and sentences in many languages."""
    rows = []
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        rows += [{"id": f"zh-{i}", "text": json.loads(line)["text"], "lang": "zh"} for i, line in enumerate(list(f)[:240])]
    for path in sorted(glob.glob(str(shared_data / "langid" / "lingua" / "sentences" / "*.txt")))[:30]:
        lang = os.path.basename(path)[:-4]
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line][:40]
        rows += [{"id": f"{lang}-{i}", "text": " ".join(lines[i:i + 8]), "lang": lang} for i in range(0, len(lines), 8)]
    folder = tmp_path_factory.mktemp("pool-inputs")
    for k in range(6):
        pq.write_table(pa.Table.from_pylist(rows[k::6]), str(folder / f"part-{k}.parquet"))
    return str(folder)


def _files(output: str) -> dict[str, bytes]:
    return {os.path.relpath(p, output): open(p, "rb").read()
            for p in glob.glob(os.path.join(output, "**", "*"), recursive=True) if os.path.isfile(p)}


def _tokens(output: str) -> list[list[int]]:
    """Every document's ids (EOS dropped), in shard order."""
    out = []
    for tokens, index in read_tokens(output):
        out += [tokens[index[i]:index[i + 1] - 1].tolist() for i in range(len(index) - 1)]
    return out


def _texts(inputs: str) -> list[str]:
    return [t for p in sorted(glob.glob(os.path.join(inputs, "*.parquet"))) for t in pq.read_table(p)["text"].to_pylist()]


def test_this_process_and_the_pool_share_the_tasks(model_path, inputs, tmp_path):
    files = input_files([inputs], "parquet")
    alone = str(tmp_path / "alone")
    summary = tokenize_corpus(model_path, files, alone, TokenizeParams(workers=1))
    assert summary["executor"] == "in-process" and summary["tasks_run"] == 6
    shared, ran = str(tmp_path / "shared"), []
    summary = tokenize_corpus(model_path, files, shared, TokenizeParams(workers=2, executor="processes"),
                              progress=ran.append)
    assert summary["executor"] == "processes" and summary["workers"] == 2 and summary["tasks_failed"] == {}
    processes = {r["pid"] for r in ran}
    assert len(processes) == 2 and os.getpid() in processes
    assert _files(shared) == _files(alone)
    # and the ids are SentencePiece's own (shards in task order: the files in order, each file's documents in order)
    assert _tokens(shared) == spm.SentencePieceProcessor(model_file=model_path).encode(_texts(inputs))


def test_threads_of_this_process_share_the_tasks(model_path, inputs, shared_data, tmp_path):
    """With rank BPE (tiktoken and SentencePiece encode outside the GIL) several workers are threads of this
    process, chosen by default on one machine: the same files as one thread, tasks running at the same time."""
    files = input_files([inputs], "parquet")
    alone = str(tmp_path / "alone")
    tokenize_corpus(model_path, files, alone, TokenizeParams(workers=1))
    threaded, ran = str(tmp_path / "threads"), []
    summary = tokenize_corpus(model_path, files, threaded, TokenizeParams(workers=2, in_process_mb=0),
                              progress=ran.append)
    assert summary["executor"] == "in-process" and "2 threads" in summary["executor_why"]
    assert summary["workers"] == 2 and summary["tasks_run"] == 6 and {r["pid"] for r in ran} == {os.getpid()}
    spans = sorted((r["started"], r["started"] + r["seconds"]) for r in ran)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    assert _files(threaded) == _files(alone)
    assert _tokens(threaded) == spm.SentencePieceProcessor(model_file=model_path).encode(_texts(inputs))
    # without rank BPE (no byte fallback: the segment cache, one dict written by every call) no threads: processes
    no_fallback = train_book_tokenizer(shared_data, str(tmp_path / "tok"), byte_fallback=False)
    summary = tokenize_corpus(no_fallback, files, str(tmp_path / "cache"),
                              TokenizeParams(workers=2, in_process_mb=0))
    assert summary["executor"] == "processes" and summary["tasks_run"] == 6


def test_a_bad_input_fails_alone(model_path, inputs, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in glob.glob(os.path.join(inputs, "*.parquet")):
        (folder / os.path.basename(path)).write_bytes(open(path, "rb").read())
    (folder / "part-9.parquet").write_bytes(b"PAR1 not really parquet")
    out = str(tmp_path / "out")
    summary = tokenize_corpus(model_path, input_files([str(folder)], "parquet"), out,
                              TokenizeParams(workers=2, executor="processes"))
    assert summary["tasks_run"] == 6 and len(summary["tasks_failed"]) == 1
    assert "part-9.parquet" in next(iter(summary["tasks_failed"].values()))
    assert summary["docs_total"] == len(_texts(inputs))


def test_a_killed_pool_process_loses_only_its_task(model_path, inputs, tmp_path):
    """The pool's process is killed as soon as it exists (before its first task can end): that task is reported
    lost, this process does all the others, and a rerun redoes the lost one to the same tokens."""
    files = input_files([inputs], "parquet")
    reference = str(tmp_path / "reference")
    tokenize_corpus(model_path, files, reference, TokenizeParams(workers=1))
    out, killed, stop = str(tmp_path / "out"), [], threading.Event()

    def kill_the_pool_process() -> None:
        while not stop.is_set() and not killed:
            try:
                children = multiprocessing.active_children()
            except RuntimeError:  # the set of children changed while read
                continue
            for child in children:
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)
            time.sleep(0.001)

    watcher = threading.Thread(target=kill_the_pool_process)
    watcher.start()
    try:
        summary = tokenize_corpus(model_path, files, out, TokenizeParams(workers=2, executor="processes"))
    finally:
        stop.set()
        watcher.join()
    assert killed
    assert summary["tasks_run"] == 5 and len(summary["tasks_failed"]) == 1
    assert "a worker process died" in next(iter(summary["tasks_failed"].values()))
    again = tokenize_corpus(model_path, files, out, TokenizeParams(workers=2, executor="processes"))
    assert again["tasks_run"] == 1 and again["tasks_failed"] == {}
    assert _tokens(out) == _tokens(reference)


def test_task_files_are_those_pa_array_and_group_by_built(model_path, shared_data, tmp_path):
    """A task builds its Arrow arrays from buffers (``pa.array`` imports pandas: 0.2 CPU-s a process): its
    ``.docs.parquet`` files and stats are byte for byte those built the previous way (Python lists through
    ``pa.array``, per-language sums by Arrow's group-by), on two sources with null languages; and a task in a
    fresh interpreter does not import pandas."""
    rows = []
    for path in sorted(glob.glob(str(shared_data / "langid" / "lingua" / "sentences" / "*.txt")))[:12]:
        lang = os.path.basename(path)[:-4]
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line][:24]
        rows += [{"id": f"{lang}-{i}", "source": "web" if i % 12 else "news", "lang": lang if i % 9 else None,
                  "text": "\n".join(lines[i:i + 4])} for i in range(0, len(lines), 4)]
    rows.append({"id": "empty", "source": "web", "lang": None, "text": ""})
    (tmp_path / "run" / "docs").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), str(tmp_path / "run" / "docs" / "part-00000.parquet"))
    out = str(tmp_path / "out")
    tokenize_corpus(model_path, input_files([str(tmp_path / "run")]), out, TokenizeParams(workers=1))
    stats = pq.read_table(glob.glob(os.path.join(out, "stats", "*.parquet"))[0])
    sources = set()
    for path in glob.glob(os.path.join(out, "*", "*.docs.parquet")):
        docs = pq.read_table(path)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({c: pa.array(docs[c].to_pylist(), docs.schema.field(c).type) for c in docs.column_names},
                                schema=docs.schema), sink)
        assert sink.getvalue().to_pybytes() == open(path, "rb").read()
        source = os.path.basename(os.path.dirname(path))
        sources.add(source)
        texts = {r["id"]: r["text"] for r in rows}
        sized = pa.table({"lang": docs["lang"], "tokens": docs["tokens"],
                          "bytes": pa.array([len(texts[i].encode()) for i in docs["id"].to_pylist()], pa.int64())})
        want = sized.group_by("lang").aggregate([("tokens", "count"), ("tokens", "sum"), ("bytes", "sum")])
        got = stats.filter(pa.compute.equal(stats["source"], source))
        assert sorted(zip(*(want[c].to_pylist() for c in ("lang", "tokens_count", "tokens_sum", "bytes_sum"))),
                      key=str) == sorted(zip(*(got[c].to_pylist() for c in ("lang", "docs", "tokens", "bytes"))), key=str)
    assert sources == {"web", "news"} and None in stats["lang"].to_pylist()
    check = (f"import sys, json; from curate.tokenizers import tokenize; from curate.tokenizers.corpus import InputFile;"
             f"meta = json.load(open({os.path.join(out, 'meta.json')!r}));"
             f"tokenize.tokenize_task(InputFile(path={inputs_file(tmp_path)!r}, format='parquet', source='s'), 't',"
             f" open({model_path!r}, 'rb').read(), {str(tmp_path / 'out2')!r}, tokenize.TokenizeParams(), meta);"
             f"print('pandas' in sys.modules)")
    os.makedirs(tmp_path / "out2" / "stats")
    os.makedirs(tmp_path / "out2" / "done")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def inputs_file(tmp_path) -> str:
    path = str(tmp_path / "plain.parquet")
    pq.write_table(pa.table({"text": ["one two", "中文 文本", ""], "lang": ["en", None, "en"]}), path)
    return path
