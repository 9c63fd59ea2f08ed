"""A run in an object store read like a local one (#17): `curate card`, `curate dashboard` and
`curate stats --db` on `s3://bucket/run/`, against moto's standalone S3 server (its own process, the same
s3fs/botocore client path a user's command takes); one "is this a curate run" check for every command
that reads a run; and tasks sized from a Ray cluster's CPUs under `--address` (a head and a worker node
started with `ray start`).

The run in the store is the demo's output uploaded with boto3, as `aws s3 sync out/ s3://bucket/run/` does
(a run written there by `curate run -o s3://...` has the same layout: tests/test_remote_output.py). Every
result read from the store is compared with the same command on the local folder.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from curate import stats
from curate.tests.remote_servers import MotoServer

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

CURATE = [sys.executable, "-m", "curate.cli"]
BUCKET = "curate-runs"
RUN = f"s3://{BUCKET}/demo"


@pytest.fixture(scope="module")
def store(demo_output):
    """moto's S3 server holding the demo's output under s3://curate-runs/demo/, and the environment a user
    sets for it (credentials, endpoint)."""
    with MotoServer() as s3:
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        for path in sorted(demo_output.rglob("*")):
            if path.is_file() and path.name not in ("README.md", "report.html"):
                client.upload_file(str(path), BUCKET, f"demo/{path.relative_to(demo_output).as_posix()}")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"},
               **s3.env(), "CURATE_READ_ATTEMPTS": "2", "CURATE_READ_BACKOFF_S": "0.05"}
        yield {"s3": s3, "env": env, "local": demo_output}


def _cli(args: list, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CURATE, *map(str, args)], cwd=cwd, env={**env, "COLUMNS": "200"}, capture_output=True,
                          text=True, timeout=600)


def _one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    text = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, text[-2000:]
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    for word in words:
        assert word in text, text


def _object(s3: MotoServer, key: str) -> bytes:
    return s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_card_of_a_run_in_the_store_equals_the_local_one(store, tmp_path):
    s3, env = store["s3"], store["env"]
    local = tmp_path / "local"
    shutil.copytree(store["local"], local)
    args = ["--license", "cc-by-4.0", "--name", "demo corpus"]
    mine = _cli(["card", str(local), *args], env, tmp_path)
    assert mine.returncode == 0, mine.stderr[-2000:]
    remote = _cli(["card", RUN + "/", *args], env, tmp_path)
    assert remote.returncode == 0, remote.stderr[-2000:]
    summary = json.loads(remote.stdout[remote.stdout.index("{"):])
    assert summary["readme"] == f"{RUN}/README.md" and summary["output"] == RUN
    # the same card, byte for byte: sizes from the listing, rows, bytes and columns from the footers read by
    # range requests, the funnel and languages through DuckDB with the store's client
    card = _object(s3, "demo/README.md").decode("utf-8")
    assert card == (local / "README.md").read_text(encoding="utf-8")
    assert "| web |" in card and "download_size" in card
    # ours is refreshed; a README the user wrote in the store is kept unless --overwrite
    assert _cli(["card", RUN], env, tmp_path).returncode == 0
    s3.client().put_object(Bucket=BUCKET, Key="demo/README.md", Body=b"# my notes\n")
    kept = _cli(["card", RUN], env, tmp_path)
    assert kept.returncode == 2 and "--overwrite" in kept.stdout + kept.stderr
    assert _object(s3, "demo/README.md") == b"# my notes\n"
    assert _cli(["card", RUN, "--overwrite"], env, tmp_path).returncode == 0
    assert _object(s3, "demo/README.md").decode("utf-8").startswith("---\n")


def _figures(html: str) -> list[str]:
    """The data of every chart of a report (what its queries returned), in page order."""
    return re.findall(r'<script type="application/json" id="(chart-\d+-data)">(.*?)</script>', html, re.S)


def test_dashboard_of_a_run_in_the_store_draws_what_the_local_one_does(store, tmp_path):
    env = store["env"]
    local = _cli(["dashboard", store["local"], "--output", tmp_path / "local.html", "--samples", "3"], env, tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    remote = _cli(["dashboard", RUN, "--samples", "3"], env, tmp_path)
    assert remote.returncode == 0, remote.stderr[-2000:]
    written = tmp_path / "demo-report.html"  # a run in a store: the report is written here, and said so
    assert f"wrote {written}" in " ".join(remote.stdout.split())
    mine, theirs = (tmp_path / "local.html").read_text(encoding="utf-8"), written.read_text(encoding="utf-8")
    assert _figures(theirs) and _figures(theirs) == _figures(mine)
    # sample rejects: the same documents, read from the store's shards by row number
    samples = re.compile(r"<section[^>]*id='samples'.*?</section>", re.S)
    assert samples.search(theirs) and samples.search(theirs).group(0) == samples.search(mine).group(0)
    assert RUN in theirs
    # the report itself is a local file
    _one_line_error(_cli(["dashboard", RUN, "--output", f"{RUN}/report.html"], env, tmp_path), "--output", "local")


def test_serve_fingerprint_sees_an_object_rewritten_in_the_store(store, monkeypatch):
    from curate.dashboards.serve import fingerprint

    for key, value in store["s3"].env().items():
        monkeypatch.setenv(key, value)
    before = fingerprint(RUN, None, None, [])
    assert before == fingerprint(RUN, None, None, [])
    client = store["s3"].client()
    manifest = _object(store["s3"], "demo/manifest.json")
    client.put_object(Bucket=BUCKET, Key="demo/manifest.json", Body=manifest + b" ")  # rewritten: a new ETag
    try:
        assert fingerprint(RUN, None, None, []) != before
    finally:
        client.put_object(Bucket=BUCKET, Key="demo/manifest.json", Body=manifest)


def test_stats_db_of_a_run_in_the_store(store, tmp_path, monkeypatch):
    env = store["env"]
    done = _cli(["stats", RUN, "--db", "run.duckdb"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    database = tmp_path / "run.duckdb"
    assert f"wrote {database}" in " ".join(done.stdout.split())
    query = "SELECT (SELECT count(*) FROM docs), (SELECT count(*) FROM rejects), (SELECT sum(docs_in) FROM stats)"
    reference = stats.connect(str(store["local"])).execute(query).fetchone()
    # the views read the store's URLs in place: a DuckDB without a client for s3:// cannot read them ...
    con = duckdb.connect(str(database), read_only=True)
    view = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'docs'").fetchone()[0]
    assert f"{RUN}/docs/*.parquet" in view
    with pytest.raises(duckdb.Error):
        con.execute(query).fetchone()
    con.close()
    # ... one with the store's client registered reads the whole run
    for key, value in store["s3"].env().items():
        monkeypatch.setenv(key, value)
    from curate.remote import filesystem

    con = duckdb.connect(str(database), read_only=True)
    con.register_filesystem(filesystem(RUN))
    assert con.execute(query).fetchone() == reference and reference[0] > 0
    # the database is a local file
    _one_line_error(_cli(["stats", RUN, "--db", f"{RUN}/run.duckdb"], env, tmp_path), "--db", "local")


@pytest.mark.parametrize("command", [["stats"], ["sql", "SELECT 1"], ["card"], ["dashboard"]])
def test_one_check_of_what_a_run_is(store, tmp_path, command):
    """Every command that reads a run says the same thing about a folder or prefix that is not one."""
    env = store["env"]
    store["s3"].client().put_object(Bucket=BUCKET, Key="notes/readme.txt", Body=b"not a run")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    for target, why in ((tmp_path / "absent", "no such folder"), (tmp_path / "plain", "no manifest.json"),
                        (f"s3://{BUCKET}/notes/", "no manifest.json")):
        result = _cli([command[0], target, *command[1:]], env, tmp_path)
        _one_line_error(result, "not a curate output", why, str(target).rstrip("/"))


# ---- tasks sized from a cluster's CPUs ---------------------------------------------------------------------

def _gzipped_jsonl(path: Path, docs: int) -> None:
    rng = random.Random(7)
    words = [f"w{n}" for n in range(5000)]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in range(docs):
            f.write(json.dumps({"id": f"d{i}", "text": " ".join(rng.choice(words) for _ in range(80))}) + "\n")


def test_cluster_run_is_sized_from_its_cpus_and_a_resume_keeps_the_cut(tmp_path):
    """Head (1 CPU) + worker node (2 CPUs): a .jsonl.gz is read in 6 parts (2 per CPU) as on a local run
    with 3 workers; before, a run with --address cut at run.task_mb alone (one task for a compressed file).
    Resumed with fewer workers, the recorded cut is kept: the finished parts are skipped, none overlaps."""
    from curate.config import from_shortcut
    from curate.readers.sizing import TaskSizing
    from curate.runner import plan_tasks
    from curate.tests.test_cluster import two_nodes

    data = tmp_path / "in.jsonl.gz"
    _gzipped_jsonl(data, 3000)
    args = ["run", "--input", data, "--format", "jsonl", "--stages", "length", "--set", "run.task_mb=0.1",
            "-o", tmp_path / "out", "--no-progress"]
    config = from_shortcut([str(data)], "jsonl", None, ["length"], ["run.task_mb=0.1"])
    cuts = {w: len(plan_tasks(config, TaskSizing(int(0.1 * (1 << 20)), w))[0]) for w in (None, 1, 3)}
    assert cuts == {None: 1, 1: 2, 3: 6}, cuts  # what each sizing gives this input: the test can tell them apart
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    with two_nodes(env, tmp_path, 11, worker_cpus=2) as (address, _):
        first = _cli([*args, "--address", address], env, tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
        assert manifest["plan"]["workers"] == 3
        tasks = sorted(manifest["tasks"])
        assert len(tasks) == 6
        reference = duckdb.connect().execute(
            f"SELECT id, text FROM read_parquet('{tmp_path}/out/docs/*.parquet') ORDER BY id").fetchall()
        assert len(reference) == 3000
        # the run as a killed driver leaves it: three tasks never committed (no stats file, no shards)
        for task in tasks[3:]:
            for path in (tmp_path / "out").glob(f"*/{task}*"):
                path.unlink()
        manifest["complete"] = False
        (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
        resumed = _cli([*args, "--address", address, "--workers", "1"], env, tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert after["complete"] and after["plan"] == manifest["plan"] and sorted(after["tasks"]) == tasks
    assert duckdb.connect().execute(
        f"SELECT id, text FROM read_parquet('{tmp_path}/out/docs/*.parquet') ORDER BY id").fetchall() == reference
