"""`curate tokenize --output s3://bucket/tokens/` against moto's standalone S3 server (#17): a cluster with no
shared disk writes its token shards to the store.

Every run is a real `curate tokenize` subprocess (s3fs/botocore talking to a server on 127.0.0.1). The test
reads the bucket back with boto3, not with curate's code: the tokens in the store must equal a local
tokenize byte for byte, also when the input is a curate run in the store, and after the command was killed
mid-run and rerun with leftovers of uncommitted tasks planted in the store. Big files are cut into row
ranges (``--task-mb``), so one input gives many tasks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.tests.remote_servers import MotoServer

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

CURATE = [sys.executable, "-m", "curate.cli"]
BUCKET = "curate-tokens"
TASK_MB = "0.01"  # about 40 tasks from the two input files


def _rows(shared_data: Path) -> list[dict]:
    rows = []
    for path in sorted((shared_data / "langid" / "lingua" / "sentences").glob("*.txt"))[:40]:
        lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line]
        for i in range(0, min(len(lines), 60), 6):
            rows.append({"id": f"{path.stem}-{i}", "source": "web", "lang": path.stem, "text": "\n".join(lines[i:i + 6])})
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        for line in list(f)[:120]:
            record = json.loads(line)
            rows.append({"id": record["id"], "source": "wiki", "lang": "zh", "text": record["text"]})
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    """moto's S3 server with a bucket holding a curate run's docs (and its manifest), the same run in a local
    folder (two shards, row groups of 25 rows), a small tokenizer trained on it, and the reference: the run
    tokenized into a local folder."""
    from curate.tokenizers.corpus import input_files
    from curate.tokenizers.train import TrainParams, train_tokenizer

    work = tmp_path_factory.mktemp("tokenize-remote")
    run = work / "run"
    (run / "docs").mkdir(parents=True)
    table = pa.Table.from_pylist(_rows(shared_data))
    half = table.num_rows // 2
    for k, part in enumerate((table.slice(0, half), table.slice(half))):
        pq.write_table(part, run / "docs" / f"part-{k:05d}.parquet", row_group_size=25)
    (run / "manifest.json").write_text(json.dumps({"complete": True}))
    train_tokenizer(input_files([str(run)]), str(work / "tok"),
                    TrainParams(vocab_size=3000, sample_bytes=2_000_000, heldout_fraction=0.0,
                                character_coverage=0.98, threads=1))
    with MotoServer() as s3:
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        for path in sorted(run.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), BUCKET, f"run/{path.relative_to(run)}")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"},
               **s3.env()}
        world = {"s3": s3, "env": env, "work": work, "run": run, "tok": work / "tok"}
        reference = _tokenize(world, str(run), str(work / "reference"), "--workers", "2")
        assert reference.returncode == 0, reference.stderr[-3000:]
        summary = json.loads(reference.stdout)
        assert summary["tasks"] >= 20 and summary["tasks_failed"] == {}
        yield world


def _tokenize(world: dict, given: str, output: str, *more: str, wait: bool = True):
    args = [*CURATE, "tokenize", "--tokenizer", str(world["tok"]), "--input", given, "--output", output,
            "--task-mb", TASK_MB, *more]
    if not wait:
        return subprocess.Popen(args, cwd=world["work"], env=world["env"], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(args, cwd=world["work"], env=world["env"], capture_output=True, text=True, timeout=600)


def _keys(s3: MotoServer, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _store_files(s3: MotoServer, prefix: str) -> dict[str, bytes]:
    client = s3.client()
    return {key[len(prefix):]: client.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in _keys(s3, prefix)}


def _same_bytes(got: dict[str, bytes], want: dict[str, bytes], skip: str = "\0") -> None:
    got = {k: v for k, v in got.items() if not k.startswith(skip)}
    want = {k: v for k, v in want.items() if not k.startswith(skip)}
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []


def _streams(files: dict[str, bytes]) -> dict[str, tuple]:
    """Per source folder: its shards' tokens, documents (id, tokens) and stats rows, in task order."""
    out = {}
    for folder in sorted({k.split("/")[0] for k in files if k.endswith(".bin")}):
        names = sorted(k for k in files if k.startswith(folder + "/"))
        docs = [pq.read_table(pa.BufferReader(files[k]), columns=["id", "tokens"]).to_pylist()
                for k in names if k.endswith(".docs.parquet")]
        out[folder] = (b"".join(files[k] for k in names if k.endswith(".bin")), docs)
    stats = pa.concat_tables([pq.read_table(pa.BufferReader(v)) for k, v in files.items() if k.startswith("stats/")])
    out["stats"] = sorted(map(str, stats.drop(["task", "shard"]).group_by(["source", "lang"])
                              .aggregate([("docs", "sum"), ("tokens", "sum"), ("bytes", "sum")]).to_pylist()))
    return out


def test_store_output_equals_a_local_tokenize(world, tmp_path):
    s3, work = world["s3"], world["work"]
    reference = _files(work / "reference")
    assert any(k.endswith(".bin") for k in reference) and "meta.json" in reference
    # local input, worker processes, output in the store: the same files, byte for byte
    done = _tokenize(world, str(world["run"]), f"s3://{BUCKET}/tokens/", "--workers", "2", "--executor", "processes")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["executor"] == "processes" and summary["tasks_run"] == summary["tasks"]
    assert "aws s3 sync" in done.stderr.strip().splitlines()[-1]
    _same_bytes(_store_files(s3, "tokens/"), reference)
    again = _tokenize(world, str(world["run"]), f"s3://{BUCKET}/tokens/", "--workers", "2")
    assert again.returncode == 0 and json.loads(again.stdout)["tasks_run"] == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["tokens_total"] == summary["tokens_total"]

    # the input a curate run in the store, tasks in this process: the same tokens (the markers name the input)
    remote_in = _tokenize(world, f"s3://{BUCKET}/run/", f"s3://{BUCKET}/tokens2/", "--workers", "1")
    assert remote_in.returncode == 0, remote_in.stderr[-3000:]
    assert json.loads(remote_in.stdout)["executor"] == "in-process"
    stored = _store_files(s3, "tokens2/")
    assert stored["meta.json"] == reference["meta.json"]
    assert _streams(stored) == _streams(reference)  # task names differ: they name the input (here a URL)
    assert len([k for k in stored if k.startswith("done/")]) == len([k for k in reference if k.startswith("done/")])

    # reading tokens memory-maps local files: a token folder in the store is a one-line error that says how
    from curate.tokenizers.tokenize import read_tokens

    with pytest.raises(ValueError, match="aws s3 sync"):
        read_tokens(f"s3://{BUCKET}/tokens/")


def test_killed_run_resumes_and_trusts_no_leftover(world):
    s3, work = world["s3"], world["work"]
    reference = _files(work / "reference")
    process = _tokenize(world, str(world["run"]), f"s3://{BUCKET}/killed/", "--workers", "1", wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if len([k for k in _keys(s3, "killed/done/")]) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "tokenize finished (or never committed 2 tasks) before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = {k.rsplit("/", 1)[1] for k in _keys(s3, "killed/done/")}
    todo = sorted({k.rsplit("/", 1)[1] for k in reference if k.startswith("done/")} - done)
    assert done and todo
    # what a killed attempt may leave: a shard, an index and a stats object of tasks without their marker
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=f"killed/web/{todo[0]}.bin", Body=b"\x01\x02partial")
    client.put_object(Bucket=BUCKET, Key=f"killed/wiki/{todo[-1]}.idx", Body=b"\x00" * 24)
    client.put_object(Bucket=BUCKET, Key=f"killed/stats/{todo[-1]}.parquet", Body=b"PAR1 not parquet")
    rerun = _tokenize(world, str(world["run"]), f"s3://{BUCKET}/killed/", "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout)
    assert summary["tasks_done_before"] == len(done) and summary["tasks_run"] == len(todo)
    _same_bytes(_store_files(s3, "killed/"), reference)


def test_bad_store_outputs_are_one_line_errors(world):
    missing = _tokenize(world, str(world["run"]), "s3://no-such-bucket-here/tokens/", "--workers", "1")
    assert missing.returncode == 2 and "no-such-bucket-here" in missing.stderr
    assert "Traceback" not in missing.stderr and _keys(world["s3"], "tokens3/") == []
    cluster_only = _tokenize(world, str(world["run"]), f"s3://{BUCKET}/tokens3/", "--executor", "processes",
                             "--address", "127.0.0.1:1")
    assert cluster_only.returncode == 2 and "cluster" in cluster_only.stderr
    assert "Traceback" not in cluster_only.stderr and _keys(world["s3"], "tokens3/") == []


def test_two_node_cluster_tokenizes_into_the_store(world, tmp_path):
    """#17 item 3: a head and a worker node started with `ray start` (token auth; the worker on its own loopback
    address), the input a curate run in the store, the output in the store: no disk shared. Tasks run on both
    nodes; the tokens equal the local tokenize."""
    from curate.tests.test_cluster import two_nodes

    env = dict(world["env"])
    with two_nodes(env, tmp_path, 17) as (address, _):
        done = subprocess.run([*CURATE, "tokenize", "--tokenizer", str(world["tok"]), "--input",
                               f"s3://{BUCKET}/run/", "--output", f"s3://{BUCKET}/cluster/", "--task-mb", TASK_MB,
                               "--address", address, "--workers", "2"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["executor"] == "ray" and "cluster" in summary["executor_why"]
    assert summary["nodes"] == 2, "tasks did not run on both nodes"
    assert _streams(_store_files(world["s3"], "cluster/")) == _streams(_files(world["work"] / "reference"))
