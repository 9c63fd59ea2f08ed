"""The runner end to end on real Ray and real DuckDB: output layout, bad input, resume after kill -9."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import ray

from curate import stats
from curate.config import from_dict
from curate.runner import OutputConflict, Runner

CURATE = [sys.executable, "-m", "curate.cli"]
TEST_STAGES = "curate.tests.pipeline_stages"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One embedded Ray for the in-process runs of this module (the runner reuses it)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def write_jsonl(path: Path, texts: list[str], **extra) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"text": text, "url": f"https://example.org/{path.stem}/{i}", **extra}) + "\n")
    return path


def run_config(raw: dict, output: Path, base: Path, **kwargs):
    config = from_dict(raw, file=str(base / "pipeline.yaml"), base_dir=str(base))
    return Runner(config, str(output), workers=2, show_progress=False, **kwargs).run()


def all_ids(output: Path) -> list[str]:
    con = stats.connect(str(output))
    return [r[0] for r in con.execute("SELECT id FROM docs UNION ALL SELECT id FROM rejects").fetchall()]


def test_output_layout_counts_and_stable_ids(tmp_path):
    texts = [f"document number {i} " * (i % 5) for i in range(3000)]
    write_jsonl(tmp_path / "a.jsonl", texts)
    write_jsonl(tmp_path / "b.jsonl", texts[:100])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["*.jsonl"]}],
           "stages": [{"length": {"min_chars": 20}}], "run": {"task_mb": 1}}
    summary = run_config(raw, tmp_path / "out", tmp_path)
    assert summary.ok and summary.tasks_run == 2
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["tasks"]) == 2
    assert {f["path"].split("/")[-1] for f in manifest["inputs"][0]["files"]} == {"a.jsonl", "b.jsonl"}
    assert not list(out.rglob("*.tmp*"))

    con = stats.connect(str(out))
    kept = con.execute("SELECT count(*) FROM docs").fetchone()[0]
    short = sum(1 for t in texts if len(t.strip()) < 20) + sum(1 for t in texts[:100] if len(t.strip()) < 20)
    assert kept == 3100 - short
    assert con.execute("SELECT count(*) FROM rejects WHERE reject_reason = 'length:too-short'").fetchone()[0] == short
    # rejected documents keep every column, plus the stage and reason
    row = con.execute("SELECT text, url, char_count, reject_stage FROM rejects LIMIT 1").fetchone()
    assert row[1].startswith("https://example.org/") and row[3] == "length"
    funnel = {(r[0], r[1]): r for r in stats.funnel(con)}
    assert funnel[("web", "read")][3] == 3100 and funnel[("web", "length")][3] == kept

    ids = all_ids(out)
    assert len(ids) == len(set(ids)) == 3100
    again = run_config(raw, tmp_path / "out2", tmp_path)
    assert again.ok and sorted(all_ids(tmp_path / "out2")) == sorted(ids)


def test_input_ids_are_kept(tmp_path):
    with open(tmp_path / "in.jsonl", "w") as f:
        for i in range(50):
            f.write(json.dumps({"id": f"doc-{i}", "content": f"text {i}"}) + "\n")
    raw = {"inputs": [{"source": "x", "format": "jsonl", "paths": ["in.jsonl"], "options": {"text_field": "content"}}],
           "stages": []}
    run_config(raw, tmp_path / "out", tmp_path)
    assert sorted(all_ids(tmp_path / "out")) == sorted(f"doc-{i}" for i in range(50))


def test_large_file_is_split_into_byte_ranges_without_loss(tmp_path):
    texts = [f"line {i} " + "x" * (i % 300) for i in range(20000)]
    write_jsonl(tmp_path / "big.jsonl", texts)
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["big.jsonl"]}], "stages": [],
           "run": {"task_mb": 1}}
    summary = run_config(raw, tmp_path / "out", tmp_path)
    assert summary.tasks_run >= 3
    con = stats.connect(str(tmp_path / "out"))
    landed = sorted(r[0] for r in con.execute("SELECT text FROM docs").fetchall())
    assert landed == sorted(texts)


def test_bad_input_is_quarantined_not_fatal(tmp_path):
    write_jsonl(tmp_path / "good.jsonl", [f"good document {i}" for i in range(200)])
    with open(tmp_path / "mixed.jsonl", "wb") as f:
        f.write(b'{"text": "before"}\n{broken json\n\xff\xfe binary \x00\n{"text": 5}\n{"no_text": 1}\n{"text": "after"}\n')
    payload = gzip.compress(b"".join(json.dumps({"text": f"gz {i}"}).encode() + b"\n" for i in range(2000)))
    (tmp_path / "truncated.jsonl.gz").write_bytes(payload[: len(payload) // 2])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["good.jsonl", "mixed.jsonl", "truncated.jsonl.gz"]}],
           "stages": [{"length": {}}]}
    summary = run_config(raw, tmp_path / "out", tmp_path)
    assert summary.ok
    con = stats.connect(str(tmp_path / "out"))
    kept = {r[0] for r in con.execute("SELECT text FROM docs").fetchall()}
    assert {"before", "after"} <= kept and sum(t.startswith("good") for t in kept) == 200
    reasons = dict(con.execute("SELECT reject_reason, count(*) FROM rejects GROUP BY ALL").fetchall())
    assert reasons["bad-json:JSONDecodeError"] == 1 and reasons["bad-json:UnicodeDecodeError"] == 1
    assert reasons["text-not-a-string"] == 1 and reasons["no-text-field"] == 1
    truncated = [r for r in reasons if r.startswith("read-error:EOFError")]
    assert truncated, reasons
    # what the truncated file held before the cut is kept, and the cut itself is counted
    assert 0 < sum(t.startswith("gz ") for t in kept) < 2000
    counted = con.execute("SELECT sum(rejected) FROM stats").fetchone()[0]
    assert counted == con.execute("SELECT count(*) FROM rejects").fetchone()[0]


def test_a_raising_stage_rejects_only_the_offending_rows(tmp_path):
    texts = [f"fine {i}" for i in range(100)]
    texts[42] = "this one will EXPLODE"
    write_jsonl(tmp_path / "in.jsonl", texts)
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["in.jsonl"]}],
           "stages": [f"{TEST_STAGES}:ExplodeOnMarker"]}
    assert run_config(raw, tmp_path / "out", tmp_path).ok
    con = stats.connect(str(tmp_path / "out"))
    assert con.execute("SELECT count(*) FROM docs WHERE explode_checked").fetchone()[0] == 99
    assert con.execute("SELECT text, reject_stage, reject_reason FROM rejects").fetchall() == [
        ("this one will EXPLODE", "explode", "error:RuntimeError")]


def test_global_stage_runs_between_segments(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ["same text", "unique a", "same text"])
    write_jsonl(tmp_path / "b.jsonl", ["same text", "unique b"])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["a.jsonl", "b.jsonl"]}],
           "stages": ["length", f"{TEST_STAGES}:KeepFirstText", f"{TEST_STAGES}:Slow"]}
    summary = run_config(raw, tmp_path / "out", tmp_path)
    assert summary.ok
    con = stats.connect(str(tmp_path / "out"))
    assert sorted(r[0] for r in con.execute("SELECT text FROM docs").fetchall()) == ["same text", "unique a", "unique b"]
    assert con.execute("SELECT count(*) FROM docs WHERE worker_pid IS NOT NULL").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM rejects WHERE reject_reason = 'duplicate-text'").fetchone()[0] == 2
    assert not (tmp_path / "out" / "work" / "segment0").exists()  # intermediate shards are cleaned up
    funnel = {r[1]: r for r in stats.funnel(con)}
    assert funnel["keep_first_text"][2] == 5 and funnel["keep_first_text"][3] == 3


def test_finished_run_is_not_redone_and_changed_config_refuses(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", ["a b c", "d e f"])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["in.jsonl"]}], "stages": ["length"]}
    assert run_config(raw, tmp_path / "out", tmp_path).tasks_run == 1
    again = run_config(raw, tmp_path / "out", tmp_path)
    assert again.already_complete and again.tasks_run == 0
    changed = {**raw, "stages": [{"length": {"min_chars": 5}}]}
    with pytest.raises(OutputConflict, match="different config"):
        run_config(changed, tmp_path / "out", tmp_path)
    replaced = run_config(changed, tmp_path / "out", tmp_path, overwrite=True)
    assert replaced.ok and replaced.docs == 2


def test_a_task_whose_worker_dies_is_retried_then_reported(tmp_path):
    write_jsonl(tmp_path / "ok.jsonl", ["fine"] * 10)
    write_jsonl(tmp_path / "bad.jsonl", ["fine", "DIE here"])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["ok.jsonl", "bad.jsonl"]}],
           "stages": [f"{TEST_STAGES}:DieOnMarker"], "run": {"max_retries": 1}}
    summary = run_config(raw, tmp_path / "out", tmp_path)
    assert not summary.ok and len(summary.failed) == 1
    (task, error), = summary.failed.items()
    assert task.startswith("web-bad-") and error
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["failed"]
    assert stats.connect(str(tmp_path / "out")).execute("SELECT count(*) FROM docs").fetchone()[0] == 10


def _cli(*args, cwd, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*CURATE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def _settled_count(stats_dir: Path, quiet_seconds: float = 4.0) -> int:
    """Finished tasks once orphaned Ray workers of a killed driver have stopped finishing any."""
    count, since = -1, time.time()
    while time.time() - since < quiet_seconds:
        now = len(list(stats_dir.glob("*.parquet")))
        if now != count:
            count, since = now, time.time()
        time.sleep(0.2)
    return count


def test_kill_9_mid_run_then_resume_gives_every_document_once(tmp_path):
    for k in range(8):
        write_jsonl(tmp_path / f"part{k}.jsonl", [f"part {k} document {i}" for i in range(400)])
    (tmp_path / "pipeline.yaml").write_text(
        "inputs:\n  - {source: web, format: jsonl, paths: ['part*.jsonl']}\n"
        f"stages:\n  - length\n  - {TEST_STAGES}:Slow: {{seconds_per_batch: 0.3}}\n"
        "run: {batch_rows: 50, executor: ray}\n")  # orphaned Ray workers of a killed driver: the hard case
    out = tmp_path / "out"
    proc = subprocess.Popen([*CURATE, "run", "pipeline.yaml", "-o", str(out), "-w", "2", "--no-progress"],
                            cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "stats").glob("*.parquet"))) < 2:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver; Ray's own processes notice and exit soon after
    proc.wait()
    finished_before_kill = _settled_count(out / "stats")
    assert 2 <= finished_before_kill < 8
    assert not json.loads((out / "manifest.json").read_text())["complete"]

    resumed = _cli("run", "pipeline.yaml", "-o", str(out), "-w", "2", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    said = " ".join(resumed.stdout.split())
    assert f"{8 - finished_before_kill} tasks run, {finished_before_kill} already done" in said, said[-400:]
    ids = all_ids(out)
    assert len(ids) == len(set(ids)) == 3200
    assert not list(out.rglob("*.tmp*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["tasks"]) == 8

    fresh = _cli("run", "pipeline.yaml", "-o", str(tmp_path / "fresh"), "-w", "2", "--no-progress", cwd=tmp_path)
    assert fresh.returncode == 0
    assert sorted(all_ids(tmp_path / "fresh")) == sorted(ids)
    again = _cli("run", "pipeline.yaml", "-o", str(out), "--no-progress", cwd=tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout


def test_cli_stats_sql_and_database_file(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", ["short", "a long enough document text"])
    (tmp_path / "p.yaml").write_text(
        "inputs:\n  - {source: web, format: jsonl, paths: [in.jsonl]}\nstages:\n  - length: {min_chars: 10}\n")
    assert _cli("run", "p.yaml", "-o", "out", "--no-progress", cwd=tmp_path).returncode == 0
    shown = _cli("stats", "out", "--db", "run.duckdb", cwd=tmp_path)
    assert shown.returncode == 0 and "length:too-short 1" in shown.stdout
    monkeypatch.chdir(tmp_path)  # the views' paths are relative to the database's folder: open it from there
    con = duckdb.connect("run.duckdb")
    assert con.execute("SELECT count(*) FROM docs").fetchone()[0] == 1
    assert con.execute("SELECT reject_reason FROM rejects").fetchone()[0] == "length:too-short"
    queried = _cli("sql", "out", "SELECT count(*) AS n FROM rejects", "--csv", cwd=tmp_path)
    assert queried.stdout.split() == ["n", "1"]
    bad = _cli("sql", "out", "SELECT nope FROM docs", cwd=tmp_path)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_shortcut_runs_with_overrides(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", ["tiny", "a document that is long enough"])
    done = _cli("run", "--input", "in.jsonl", "--format", "jsonl", "--source", "notes", "--stages", "length",
                "--set", "length.min_chars=10", "-o", "out", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    con = stats.connect(str(tmp_path / "out"))
    assert con.execute("SELECT source, text FROM docs").fetchall() == [("notes", "a document that is long enough")]
    bad = _cli("run", "--input", "in.jsonl", "--format", "jsonl", "--stages", "length",
               "--set", "length.min_chars=ten", "-o", "out2", cwd=tmp_path)
    assert bad.returncode == 2
    assert "length.min_chars" in bad.stderr and "expected an integer" in bad.stderr


def test_running_from_a_folder_that_holds_a_curate_folder(tmp_path):
    """Ray puts the driver's working directory on workers' sys.path; a `curate/` there (a checkout) must not win."""
    decoy = tmp_path / "curate"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy curate/ folder was imported')\n")
    write_jsonl(tmp_path / "in.jsonl", ["a document", "another document"])
    (tmp_path / "words.txt").write_text("unused\n")
    cli = str(Path(sys.executable).parent / "curate")
    done = subprocess.run([cli, "run", "--input", "in.jsonl", "--format", "jsonl", "--stages", "length",
                           "-o", "out", "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 docs kept" in " ".join(done.stdout.split())


def test_a_file_name_that_is_not_utf8_does_not_stop_the_run(tmp_path):
    """Names arrive with surrogate escapes, which Arrow refuses: every column gets a printable form."""
    odd = os.fsdecode(b"caf\xe9.jsonl")  # latin-1 bytes in a file name
    (tmp_path / odd).write_text('{"text": "a document from an oddly named file"}\n'
                                '{"text": "a lone surrogate \\ud800 escape: valid JSON, not UTF-8"}\n'
                                '{"text": "the line after it"}\n')
    (tmp_path / os.fsdecode(b"bad\xff.html")).write_bytes(
        b"<html><body><article><p>" + b"Plenty of ordinary words in a sentence here. " * 40 + b"</p></article></body></html>")
    raw = {"inputs": [{"source": "notes", "format": "jsonl", "paths": ["*.jsonl"]},
                      {"source": "pages", "format": "html", "paths": ["*.html"]}], "stages": ["extract", "length"]}
    summary = run_config(raw, tmp_path / "out", tmp_path)
    assert summary.ok, summary.failed
    con = stats.connect(str(tmp_path / "out"))
    paths = sorted(r[0].rsplit("/", 1)[1] for r in con.execute("SELECT path FROM docs").fetchall())
    assert paths == ["bad\ufffd.html", "caf\ufffd.jsonl", "caf\ufffd.jsonl"]
    assert con.execute("SELECT reject_reason FROM rejects").fetchall() == [("bad-json:lone-surrogate",)]
