"""Inputs over HTTP (range requests) and S3 (moto's standalone server), as a user's run reads them (#17).

Each run is a real `curate run` subprocess: aiohttp and s3fs/botocore talk to real servers on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from curate.tests.remote_servers import HttpServer, MotoServer, free_port

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

CURATE = [sys.executable, "-m", "curate.cli"]
WARCS = ("dolma/sample-0000.warc.gz", "commoncrawl-whirlwind/whirlwind.warc.gz")


@pytest.fixture(scope="module")
def servers(tmp_path_factory, shared_data):
    """An HTTP server over a folder of the shared WARCs, and an S3 bucket holding the same files."""
    root = tmp_path_factory.mktemp("served")
    for name in WARCS:
        shutil.copy(shared_data / "warc" / name, root / Path(name).name)
    with gzip.open(root / "warc.paths.gz", "wt") as f:  # Common Crawl's listing: relative paths, one a line
        f.write("flaky/whirlwind.warc.gz\nbroken/sample-0000.warc.gz\n")
    lines = [json.dumps({"text": f"line {i} " + "word " * (i % 50), "url": f"https://e.x/{i}"}) for i in range(3000)]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
    with HttpServer(root) as http, MotoServer() as s3:
        client = s3.client()
        client.create_bucket(Bucket="crawl-data")
        for name in (*WARCS, "x/docs.jsonl"):
            client.upload_file(str(root / Path(name).name), "crawl-data", f"cc/{Path(name).name}")
        yield root, http, s3


def _env(s3: MotoServer, **more: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
    return {**base, **s3.env(), "CURATE_READ_ATTEMPTS": "4", "CURATE_READ_BACKOFF_S": "0.05", **more}


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*CURATE, "run", *args, "--no-progress", "--workers", "1"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _docs(out: Path) -> list[tuple]:
    return duckdb.connect().execute(
        f"SELECT url, text FROM read_parquet('{out}/docs/*.parquet') ORDER BY url, text").fetchall()


def _rejects(out: Path) -> list[tuple]:
    return duckdb.connect().execute(
        f"SELECT split_part(reject_reason, ':', 1) || ':' || split_part(reject_reason, ':', 2), path "
        f"FROM read_parquet('{out}/rejects/*.parquet') ORDER BY 1, 2").fetchall()


def test_http_and_s3_inputs_equal_a_local_run_and_resume(servers, tmp_path):
    root, http, s3 = servers
    env = _env(s3)
    stages = ["--format", "warc", "--stages", "extract,length"]
    local = _run(["--input", *(str(root / Path(n).name) for n in WARCS), *stages, "-o", "local"], tmp_path, env)
    assert local.returncode == 0, local.stderr
    remote_args = ["--input", f"{http.url}/sample-0000.warc.gz", "s3://crawl-data/cc/whirl*.warc.gz",
                   *stages, "-o", "remote"]
    remote = _run(remote_args, tmp_path, env)
    assert remote.returncode == 0, remote.stderr
    assert _docs(tmp_path / "remote") == _docs(tmp_path / "local") != []
    manifest = json.loads((tmp_path / "remote" / "manifest.json").read_text())
    files = [f for spec in manifest["inputs"] for f in spec["files"]]
    assert [f["path"] for f in files] == [f"{http.url}/sample-0000.warc.gz", "s3://crawl-data/cc/whirlwind.warc.gz"]
    assert all(f["bytes"] > 0 and f["remote"] for f in files)  # size and ETag: a changed object is noticed
    again = _run(remote_args, tmp_path, env)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr
    # the object changes under the output: the rerun refuses, naming it, and writes nothing
    s3.client().upload_file(str(root / "sample-0000.warc.gz"), "crawl-data", "cc/whirlwind.warc.gz")
    changed = _run(remote_args, tmp_path, env)
    assert changed.returncode == 2 and "s3://crawl-data/cc/whirlwind.warc.gz" in changed.stderr, changed.stderr
    assert "Traceback" not in changed.stderr
    s3.client().upload_file(str(root / "whirlwind.warc.gz"), "crawl-data", "cc/whirlwind.warc.gz")


def test_input_list_with_retries_and_a_persistent_error(servers, tmp_path):
    """A CC-style paths.gz over HTTP: a file whose reads fail twice each is read whole after retries; one
    whose reads always fail becomes one counted read-error reject, the run goes on."""
    root, http, s3 = servers
    env = _env(s3)
    out = tmp_path / "listed"
    done = _run(["--input-list", f"{http.url}/warc.paths.gz", "--input-base", http.url, "--format", "warc",
                 "--stages", "extract,length", "-o", str(out)], tmp_path, env)
    assert done.returncode == 0, done.stderr
    local = _run(["--input", str(root / "whirlwind.warc.gz"), "--format", "warc", "--stages", "extract,length",
                  "-o", "local1"], tmp_path, env)
    assert local.returncode == 0, local.stderr
    assert _docs(out) == _docs(tmp_path / "local1") != []
    assert _rejects(out) == [("read-error:ClientResponseError", f"{http.url}/broken/sample-0000.warc.gz")]
    assert "read-error" in done.stderr


def test_jsonl_byte_ranges_over_http_and_s3(servers, tmp_path):
    """Large JSON lines files are split into byte-range tasks; each range is read by range requests."""
    root, http, s3 = servers
    env = _env(s3)
    args = ["--format", "jsonl", "--stages", "length", "--set", "run.task_mb=0.02"]
    local = _run(["--input", str(root / "docs.jsonl"), *args, "-o", "local"], tmp_path, env)
    remote = _run(["--input", f"{http.url}/docs.jsonl", "s3://crawl-data/cc/docs.jsonl", *args, "-o", "remote"],
                  tmp_path, env)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    tasks = json.loads((tmp_path / "remote" / "manifest.json").read_text())["tasks"]
    assert len(tasks) > 4  # split into ranges
    assert _docs(tmp_path / "remote") == sorted(_docs(tmp_path / "local") * 2)


@pytest.mark.parametrize("case", ["http-404", "no-bucket", "no-credentials", "refused", "bad-list"])
def test_bad_remote_inputs_are_one_line_errors(servers, tmp_path, case):
    root, http, s3 = servers
    env = _env(s3, CURATE_READ_ATTEMPTS="2")
    given = {"http-404": ["--input", f"{http.url}/nothere.warc.gz"],
             "no-bucket": ["--input", "s3://no-such-bucket-17/cc/*.warc.gz"],
             "no-credentials": ["--input", "s3://crawl-data/cc/whirlwind.warc.gz"],
             "refused": ["--input", f"http://127.0.0.1:{free_port()}/a.warc.gz"],
             "bad-list": ["--input-list", f"{http.url}/nothere.paths.gz"]}[case]
    if case == "no-credentials":
        env = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        env["HOME"] = str(tmp_path)  # no ~/.aws either
    done = _run([*given, "--format", "warc", "-o", "out"], tmp_path, env)
    expected = {"http-404": (2, "not found"), "no-bucket": (2, "bucket no-such-bucket-17 does not exist"),
                "no-credentials": (2, "no AWS credentials"), "refused": (1, "Cannot connect"),
                "bad-list": (2, "not found")}[case]
    assert done.returncode == expected[0], done.stderr
    assert expected[1] in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3  # one message (rich wraps long lines)
    assert not (tmp_path / "out").exists()  # nothing written that a rerun could trust


def test_stats_and_sql_read_an_output_in_s3(servers, tmp_path):
    """`curate stats` and `curate sql` on s3://bucket/run/ read the Parquet there (DuckDB reading through
    s3fs: its httpfs extension is downloaded at run time, which cannot happen offline) and equal the local
    answers; a prefix without a manifest is refused in one line."""
    root, http, s3 = servers
    env = _env(s3)
    local = _run(["--input", str(root / "whirlwind.warc.gz"), "--format", "warc", "--stages", "extract,length",
                  "-o", "out"], tmp_path, env)
    assert local.returncode == 0, local.stderr
    client = s3.client()
    client.create_bucket(Bucket="runs")
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "runs", f"r1/{path.relative_to(tmp_path / 'out')}")
    query = "SELECT source, count(*), sum(length(text)) FROM docs GROUP BY source"
    answers = [subprocess.run([*CURATE, "sql", where, query, "--csv"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120) for where in ("out", "s3://runs/r1/")]
    assert all(a.returncode == 0 for a in answers), answers[1].stderr
    assert answers[0].stdout == answers[1].stdout and "warc," in answers[1].stdout
    funnel = subprocess.run([*CURATE, "stats", "s3://runs/r1"], cwd=tmp_path, env={**env, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=120)
    assert funnel.returncode == 0 and "extract" in funnel.stdout, funnel.stderr
    missing = subprocess.run([*CURATE, "sql", "s3://runs/nothing/", query], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no manifest.json" in missing.stderr and "Traceback" not in missing.stderr
