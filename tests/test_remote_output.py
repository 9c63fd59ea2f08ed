"""Outputs in an object store (#17): `curate run --output s3://bucket/run/` against moto's standalone S3 server,
inputs over a real HTTP server with range requests.

Every run is a real `curate` subprocess (s3fs/botocore and aiohttp talking to servers on 127.0.0.1, real Ray):
the S3 output must equal the same run written to a local folder, resume after the driver is killed with
SIGKILL (objects a killed attempt left are not trusted), and `curate stats`, `curate sql`, `curate tokenizer
train` and `curate tokenize` must read it there. The test reads the bucket back with boto3 (not curate's code).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.tests.remote_servers import HttpServer, MotoServer

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

CURATE = [sys.executable, "-m", "curate.cli"]
BUCKET = "curate-out"
#: Six small WARCs of the shared data (one task each): HTML pages, non-HTML records; and a copy of the first
#: under another name, whose documents dedup's global step finds again.
WARCS = ("dolma/sample-0000.warc.gz", "resiliparse/warcfile.warc.gz", "webarchive-commons/IAH-urls-wget.warc.gz",
         "commoncrawl-whirlwind/whirlwind.warc.gz", "pywb/dupes.warc.gz", "jwarc/cc.warc.gz")


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    """The HTTP server over the WARCs, moto's S3 server with an empty bucket, and the reference run: the
    default WARC pipeline (dedup and pii included) from the same URLs into a local folder."""
    root = tmp_path_factory.mktemp("served")
    for name in WARCS:
        shutil.copy(shared_data / "warc" / name, root / Path(name).name)
    shutil.copy(shared_data / "warc" / WARCS[0], root / "copy.warc.gz")
    for name, word in (("a.jsonl", "alpha"), ("b.jsonl", "beta")):  # both numbered from 0: colliding ids
        (root / name).write_text("".join(json.dumps({"id": i, "text": f"{word} document {i} " * 3}) + "\n"
                                         for i in range(60)))
    work = tmp_path_factory.mktemp("runs")
    with HttpServer(root) as http, MotoServer() as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"},
               **s3.env(), "CURATE_READ_ATTEMPTS": "3", "CURATE_READ_BACKOFF_S": "0.05"}
        urls = [f"{http.url}/{Path(name).name}" for name in (*WARCS, "copy.warc.gz")]
        local = _run(urls, str(work / "local"), work, env)
        assert local.returncode == 0, local.stderr[-3000:]
        yield {"http": http, "s3": s3, "env": env, "urls": urls, "work": work, "local": work / "local",
               "base": http.url}


def _args(urls: list[str], output: str, *more: str) -> list[str]:
    return [*CURATE, "run", "--input", *urls, "--format", "warc", "-o", output, "--no-progress", "--workers", "1",
            *more]


def _run(urls: list[str], output: str, cwd: Path, env: dict, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run(_args(urls, output, *more), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _keys(s3: MotoServer, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _download(s3: MotoServer, prefix: str, dest: Path) -> Path:
    client = s3.client()
    for key in _keys(s3, prefix):
        target = dest / key[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(target))
    return dest


def _content(out: Path) -> dict:
    """What a run produced, by document id: kept texts, rejects with their stage and reason, stats counts."""
    con = duckdb.connect()
    return {
        "docs": con.execute(f"SELECT id, text FROM read_parquet('{out}/docs/*.parquet', union_by_name = true) "
                            "ORDER BY id").fetchall(),
        "rejects": con.execute(f"SELECT id, reject_stage, reject_reason FROM read_parquet('{out}/rejects/*.parquet', "
                               "union_by_name = true) ORDER BY id, reject_stage").fetchall(),
        "stats": con.execute(f"SELECT source, stage, sum(docs_in), sum(docs_out), sum(rejected), sum(skipped) "
                             f"FROM read_parquet('{out}/stats/*.parquet') GROUP BY ALL ORDER BY ALL").fetchall(),
    }


def _same_run(s3: MotoServer, prefix: str, local: Path, dest: Path) -> None:
    remote = _content(_download(s3, prefix, dest))
    reference = _content(local)
    assert reference["docs"] and reference["rejects"]
    assert "dedup" in {stage for _, stage, _ in reference["rejects"]}  # the global step ran, and found the copy
    for part in ("docs", "rejects", "stats"):  # the differences, named, before the whole comparison
        assert set(remote[part]) - set(reference[part]) == set() == set(reference[part]) - set(remote[part]), part
    assert remote == reference
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["complete"] and manifest["docs"] == len(reference["docs"])
    keys = _keys(s3, prefix)
    assert prefix + ".curate.lock" not in keys  # released at the end
    assert not [k for k in keys if "/work/segment" in k]  # intermediate shards removed when complete


def test_s3_output_equals_a_local_run_and_is_read_there(world, tmp_path):
    s3, env, work = world["s3"], world["env"], world["work"]
    done = _run(world["urls"], f"s3://{BUCKET}/run/", work, env)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_run(s3, "run/", world["local"], tmp_path / "run")

    again = _run(world["urls"], f"s3://{BUCKET}/run/", work, env)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr[-2000:]

    stats = subprocess.run([*CURATE, "stats", f"s3://{BUCKET}/run/"], cwd=work, env={**env, "COLUMNS": "200"},
                           capture_output=True, text=True, timeout=300)
    assert stats.returncode == 0, stats.stderr[-2000:]
    assert "dedup" in stats.stdout and "extract" in stats.stdout
    sql = subprocess.run([*CURATE, "sql", f"s3://{BUCKET}/run/", "--csv",
                          "SELECT (SELECT count(*) FROM docs), (SELECT count(*) FROM rejects), "
                          "(SELECT sum(docs_in) FROM stats WHERE stage = 'read')"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert sql.returncode == 0, sql.stderr[-2000:]
    reference = duckdb.connect().execute(
        f"SELECT (SELECT count(*) FROM read_parquet('{world['local']}/docs/*.parquet', union_by_name = true)), "
        f"(SELECT count(*) FROM read_parquet('{world['local']}/rejects/*.parquet', union_by_name = true)), "
        f"(SELECT sum(docs_in) FROM read_parquet('{world['local']}/stats/*.parquet') WHERE stage = 'read')").fetchone()
    assert sql.stdout.strip().splitlines()[-1] == ",".join(str(v) for v in reference)

    # a tokenizer trained on the run in the store, then its documents tokenized from there into a local
    # folder: the same tokens as tokenizing the local run (token output in a store: tests/test_tokenize_remote.py)
    train = subprocess.run([*CURATE, "tokenizer", "train", "--input", f"s3://{BUCKET}/run/", "--output", "tok",
                            "--vocab-size", "800", "--character-coverage", "0.98", "--heldout-fraction", "0",
                            "--threads", "1"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    tokens = {}
    for name, given in (("remote", f"s3://{BUCKET}/run/"), ("local", str(world["local"]))):
        result = subprocess.run([*CURATE, "tokenize", "--tokenizer", "tok", "--input", given, "--output", name,
                                 "--workers", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        tokens[name] = _tokens_by_doc(tmp_path / name)
    assert tokens["remote"] == tokens["local"] and len(tokens["local"]) == len(_content(world["local"])["docs"])


def _tokens_by_doc(folder: Path) -> dict[str, tuple]:
    """Document id -> its token ids, from `curate tokenize` output (``<source>/<task>.bin/.idx/.docs.parquet``)."""
    dtype = np.dtype(json.loads((folder / "meta.json").read_text())["dtype"])
    out = {}
    for docs in folder.glob("*/*.docs.parquet"):
        base = str(docs)[: -len(".docs.parquet")]
        flat = np.fromfile(base + ".bin", dtype=dtype)
        offsets = np.fromfile(base + ".idx", dtype=np.uint64)
        for i, doc in enumerate(pq.read_table(docs, columns=["id"])["id"].to_pylist()):
            out[doc] = tuple(flat[offsets[i]:offsets[i + 1]].tolist())
    return out


def test_a_killed_run_resumes_and_trusts_no_leftover_object(world, tmp_path):
    """SIGKILL the driver while the server is slow (some tasks committed, others not), leave objects a killed
    attempt could have left (shards of an unfinished task), rerun: it takes over the dead run's lock, redoes
    only the unfinished tasks, and the output equals the local run's."""
    s3, env, work, http = world["s3"], world["env"], world["work"], world["http"]
    http.handler.delay_s = 1.5  # every GET waits: one task takes 1.5 s or more
    try:
        driver = subprocess.Popen(_args(world["urls"], f"s3://{BUCKET}/killed/"), cwd=work, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 240
        while len(_keys(s3, "killed/stats/")) < 2 and driver.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=60)
    finally:
        http.handler.delay_s = 0.0
    finished = [k.rsplit("/", 1)[1].removesuffix(".parquet") for k in _keys(s3, "killed/stats/")]
    every = sorted(p.name.removesuffix(".parquet") for p in (world["local"] / "stats").glob("*.parquet")
                   if not p.name.startswith("s1-"))  # segment-0 tasks (s1-...: after dedup)
    assert 2 <= len(finished) < len(every), finished  # killed mid-run
    assert "killed/.curate.lock" in _keys(s3, "killed/")  # a SIGKILLed driver cannot release its lock
    manifest = json.loads(s3.client().get_object(Bucket=BUCKET, Key="killed/manifest.json")["Body"].read())
    assert not manifest["complete"]

    unfinished = next(t for t in every if t not in finished)
    bogus = pa.table({"id": ["left-over"], "source": ["warc"], "text": ["a shard of a task that never committed"]})
    # what its attempt could have uploaded before the kill: shards (segment 0 lands in work/segment0/ when a
    # global step follows), a second part, rejects; but no stats object
    for key in (f"killed/work/segment0/{unfinished}.parquet", f"killed/work/segment0/{unfinished}.3.parquet",
                f"killed/rejects/{unfinished}.read.parquet"):
        sink = pa.BufferOutputStream()
        pq.write_table(bogus, sink)
        s3.client().put_object(Bucket=BUCKET, Key=key, Body=sink.getvalue().to_pybytes())

    rerun = _run(world["urls"], f"s3://{BUCKET}/killed/", work, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "took over the lock" in rerun.stderr
    skipped = re.search(r"(\d+) already done", rerun.stdout)
    assert skipped and len(finished) <= int(skipped.group(1)) < len(every), rerun.stdout[-2000:]
    _same_run(s3, "killed/", world["local"], tmp_path / "killed")


def test_colliding_ids_are_made_unique_in_the_store(world, tmp_path):
    """The id check after segment 0 reads the shards in the store and rewrites those holding a colliding id
    (downloaded, rewritten locally, uploaded whole over the key): the same ids as the run into a folder."""
    env, s3 = world["env"], world["s3"]
    args = ["--input", f"{world['base']}/a.jsonl", f"{world['base']}/b.jsonl", "--format", "jsonl",
            "--stages", "length,exact_dedup", "--no-progress", "--workers", "1"]
    for output in (str(tmp_path / "local"), f"s3://{BUCKET}/ids/"):
        done = subprocess.run([*CURATE, "run", *args, "-o", output], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "120 documents had an id that another document of the run also had" in done.stdout
    remote = _download(s3, "ids/", tmp_path / "ids")

    def ids(out: Path) -> list[tuple]:
        return duckdb.connect().execute(f"SELECT id, given_id, text FROM read_parquet('{out}/docs/*.parquet', "
                                        "union_by_name = true) ORDER BY id").fetchall()
    assert ids(remote) == ids(tmp_path / "local") and len(ids(remote)) == 120
    assert json.loads((remote / "manifest.json").read_text())["ids"] == {"renamed": 120, "colliding_ids": 60}


def _one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout[-1000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_bad_outputs_are_one_line_errors_and_write_nothing(world):
    s3, env, work = world["s3"], world["env"], world["work"]
    urls = world["urls"][-1:]
    _one_line_error(_run(urls, "s3://no-such-bucket/run/", work, env), 2, "bucket no-such-bucket does not exist")

    anonymous = {**{k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
                 "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
    _one_line_error(_run(urls, f"s3://{BUCKET}/anon/", work, anonymous), 2, "no AWS credentials")
    assert _keys(s3, "anon/") == []

    s3.client().put_object(Bucket=BUCKET, Key="other/notes.txt", Body=b"not a curate run")
    _one_line_error(_run(urls, f"s3://{BUCKET}/other/", work, env), 2, "not a curate output")
    assert _keys(s3, "other/") == ["other/notes.txt"]
    replaced = _run(urls, f"s3://{BUCKET}/other/", work, env, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert "other/notes.txt" not in _keys(s3, "other/") and "other/manifest.json" in _keys(s3, "other/")

    # a live run holds the output: this process, on this host, renewed just now
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": "now", "renewed": time.time()}
    s3.client().put_object(Bucket=BUCKET, Key="busy/.curate.lock", Body=json.dumps(holder).encode())
    _one_line_error(_run(urls, f"s3://{BUCKET}/busy/", work, env), 1, "another curate run", "--break-lock")
    assert _keys(s3, "busy/") == ["busy/.curate.lock"]


def test_the_lock_object(world, monkeypatch):
    """Two runs cannot both hold an output; a stale lock (dead driver here, or not renewed) is taken over."""
    from curate.runner import OutputLocked, RemoteOutputLock

    for key, value in world["s3"].env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CURATE_LOCK_RENEW_S", "0.2")
    output = f"s3://{BUCKET}/locks"
    first = RemoteOutputLock(output)
    first.acquire()
    with pytest.raises(OutputLocked, match="another curate run"):
        RemoteOutputLock(output).acquire()

    def renewed() -> float:
        return json.loads(world["s3"].client().get_object(Bucket=BUCKET, Key="locks/.curate.lock")["Body"].read())[
            "renewed"]
    before = renewed()
    time.sleep(1.0)
    assert renewed() > before  # the holder renews it: a live run's lock never looks stale
    first.release()
    assert _keys(world["s3"], "locks/") == []

    client = world["s3"].client()
    for holder, break_lock in (
            ({"pid": os.getpid(), "host": "elsewhere", "since": "then", "renewed": time.time() - 3600}, False),
            ({"pid": os.getpid(), "host": socket.gethostname(), "since": "now", "renewed": time.time()}, True)):
        client.put_object(Bucket=BUCKET, Key="locks/.curate.lock", Body=json.dumps(holder).encode())
        lock = RemoteOutputLock(output, break_lock=break_lock)
        lock.acquire()
        assert lock.previous.startswith(f"pid {os.getpid()} on {holder['host']}")
        body = json.loads(client.get_object(Bucket=BUCKET, Key="locks/.curate.lock")["Body"].read())
        assert body["pid"] != holder["pid"] or body["host"] != holder["host"] or body["renewed"] > holder["renewed"]
        lock.release()
    assert _keys(world["s3"], "locks/") == []


# The two-node cluster with its output in this store (no shared disk, dedup, the worker node killed mid-run)
# is tests/test_cluster.py::test_two_nodes_remote_inputs_and_losing_the_worker_node.
