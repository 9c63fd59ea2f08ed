"""No silent loss, no poisoned output (issue 14): colliding input ids, invalid UTF-8, changed inputs,
unreadable folders, inputs that yield nothing, a locked output folder. Real Ray, real files."""

from __future__ import annotations

import fcntl
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from click.testing import CliRunner

from curate import stats
from curate.cli import main
from curate.config import from_dict
from curate import runner as runner_module
from curate.runner import Runner

CURATE = [sys.executable, "-m", "curate.cli"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One embedded Ray for the in-process runs of this module (the runner and the CLI reuse it)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def run_config(raw: dict, output: Path, base: Path, **kwargs):
    config = from_dict(raw, file=str(base / "pipeline.yaml"), base_dir=str(base))
    return Runner(config, str(output), workers=2, show_progress=False, **kwargs).run()


def cli(*args: str, cwd: Path):
    """The command in this process (Ray is already up): exit code, stdout and stderr, never a traceback."""
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(previous)
    return result


def no_dac_prefix() -> list[str]:
    """Root ignores permission bits; root without CAP_DAC_OVERRIDE/READ_SEARCH obeys them for its own files."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder unreadable to this test")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


# ---------------------------------------------------------------- 1. colliding input ids


def test_colliding_input_ids_lose_nothing_merge_nothing_and_are_reported(tmp_path):
    """Two files numbered from 0: a duplicate in one must not take the other file's document with it."""
    a = [{"id": i, "text": f"alpha document {i} with words of its own {i * 7919}"} for i in range(100)]
    b = [{"id": i, "text": f"beta document {i} with other words {i * 104729}"} for i in range(100)]
    a[1]["text"] = a[0]["text"]          # an exact duplicate inside a.jsonl: a[1] goes, and only a[1]
    b[50]["text"] = a[50]["text"]        # the same document (same id, same text) in both files: one stays
    c = [{"id": f"c-{i}", "text": f"gamma document {i} numbered its own way"} for i in range(20)]
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    write_jsonl(tmp_path / "c.jsonl", c)
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["a.jsonl", "b.jsonl", "c.jsonl"]}],
           "stages": [{"dedup": {"fuzzy": False}}]}
    summary = run_config(raw, tmp_path / "out", tmp_path)
    assert summary.ok, summary.failed
    con = stats.connect(str(tmp_path / "out"))
    ids = [r[0] for r in con.execute("SELECT id FROM docs UNION ALL SELECT id FROM rejects").fetchall()]
    assert len(ids) == len(set(ids)) == 220
    kept = {r[0] for r in con.execute("SELECT text FROM docs").fetchall()}
    assert len(kept) == con.execute("SELECT count(*) FROM docs").fetchone()[0] == 218
    assert all(row["text"] in kept for row in b + c)
    assert con.execute("SELECT count(*) FROM rejects WHERE reject_reason = 'exact-duplicate'").fetchone()[0] == 2
    # ids that were unique stay as given; the colliding ones were made unique, the given one preserved
    assert {f"c-{i}" for i in range(20)} <= set(ids)
    renamed = con.execute("SELECT given_id, count(*) FROM (SELECT given_id FROM docs UNION ALL "
                          "SELECT given_id FROM rejects) WHERE given_id IS NOT NULL GROUP BY ALL").fetchall()
    assert sorted(renamed) == sorted((str(i), 2) for i in range(100))
    assert summary.ids_renamed == 200
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["ids"] == {"renamed": 200, "colliding_ids": 100}
    shown = cli("stats", "out", cwd=tmp_path)
    assert shown.exit_code == 0
    assert re.search(r"200 documents .*id.*given_id", " ".join(shown.output.split())), shown.output[-600:]


def test_renamed_ids_are_stable_and_a_resumed_renaming_changes_nothing(tmp_path):
    """The same shards give the same new ids; a renaming killed half-way and redone gives them too."""
    from curate.ids import make_unique

    def shards(folder: Path) -> list[str]:
        folder.mkdir()
        for name, ids in (("web-a.parquet", ["0", "1", "2"]), ("web-b.parquet", ["1", "2", "x"])):
            pq.write_table(pa.table({"id": ids, "source": ["web"] * 3, "text": [f"{name} {i}" for i in ids]}),
                           folder / name)
        return sorted(str(p) for p in folder.glob("*.parquet"))

    def ids_of(paths: list[str]) -> list[tuple]:  # (id, given_id) of every row, in order
        return [row for p in paths for row in zip(*pq.read_table(p, columns=["id", "given_id"]).to_pydict().values())]

    first, second = shards(tmp_path / "one"), shards(tmp_path / "two")
    assert make_unique(first, str(tmp_path / "one-work")) == {"colliding_ids": 2, "renamed": 4}
    # the second copy: the decision is taken, one shard rewritten, then the run "dies" and starts again
    from curate.ids import DONE

    make_unique(second, str(tmp_path / "two-work"))
    os.remove(tmp_path / "two-work" / DONE)
    assert make_unique(second, str(tmp_path / "two-work"))["renamed"] == 4
    assert ids_of(first) == ids_of(second)
    ids = [row[0] for row in ids_of(first)]
    assert len(set(ids)) == 6 and "0" in ids and "x" in ids and "1" not in ids
    assert sorted(g for _, g in ids_of(first) if g) == ["1", "1", "2", "2"]


def test_dedup_never_decides_for_a_document_by_a_shared_id(tmp_path):
    """Handed shards whose ids collide, the dedup stage stops with the id rather than merge documents."""
    from curate.stages.dedup import MinHashDedup

    shard_a = tmp_path / "a.parquet"
    shard_b = tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": ["0", "1"], "source": ["x", "x"], "text": ["same words here", "same words here"],
                             "url": pa.nulls(2, pa.string()), "path": ["a", "a"]}), shard_a)
    pq.write_table(pa.table({"id": ["1"], "source": ["x"], "text": ["a different document entirely"],
                             "url": pa.nulls(1, pa.string()), "path": ["b"]}), shard_b)
    stage = MinHashDedup.from_config({"fuzzy": False}, where="dedup")
    with pytest.raises(RuntimeError, match=r"id '1'.*2 different documents"):
        stage.run([str(shard_a), str(shard_b)], str(tmp_path / "work"), workers=2)


# ---------------------------------------------------------------- 2. invalid UTF-8


def _invalid_string_array(values: list[bytes]) -> pa.Array:
    """A string array holding bytes as they are (Arrow does not validate buffers built this way)."""
    offsets = np.cumsum([0] + [len(v) for v in values]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets.tobytes()),
                                                            pa.py_buffer(b"".join(values))])


def test_invalid_utf8_never_reaches_a_shard(tmp_path):
    lines = [json.dumps({"text": f"fine line {i} with some words"}).encode() for i in range(5)]
    lines.insert(2, b'{"text": "caf\xe9 latin-1 inside valid JSON"}')
    (tmp_path / "web.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    text = _invalid_string_array([b"good parquet text", b"bad \xff\xfe parquet text", b"more good text"])
    title = _invalid_string_array([b"ok", b"ok", b"bad title \xc3"])
    pq.write_table(pa.table({"text": text, "title": title}), tmp_path / "table.parquet")
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["web.jsonl"]},
                      {"source": "tab", "format": "parquet", "paths": ["table.parquet"],
                       "options": {"keep_fields": ["title"]}}],
           "stages": [{"length": {"min_chars": 16}}]}
    summary = run_config(raw, tmp_path / "out", tmp_path)
    assert summary.ok, summary.failed
    con = stats.connect(str(tmp_path / "out"))
    # every query over every column works: nothing invalid landed
    con.execute("SELECT * FROM docs").fetchall()
    con.execute("SELECT * FROM rejects").fetchall()
    reasons = dict(con.execute("SELECT reject_reason, count(*) FROM rejects GROUP BY ALL").fetchall())
    assert reasons.get("bad-json:UnicodeDecodeError") == 1, reasons
    assert reasons.get("bad-utf8:text") == 1 and reasons.get("bad-utf8:title") == 1, reasons
    assert con.execute("SELECT count(*) FROM docs WHERE source = 'web'").fetchone()[0] == 5
    assert con.execute("SELECT text FROM docs WHERE source = 'tab'").fetchall() == [("good parquet text",)]
    # what was rejected is readable, the bad bytes shown as U+FFFD, and counted in the funnel
    shown = con.execute("SELECT text FROM rejects WHERE reject_reason = 'bad-utf8:text'").fetchone()[0]
    assert "\ufffd" in shown and "parquet text" in shown
    assert con.execute("SELECT sum(rejected) FROM stats WHERE stage = 'read'").fetchone()[0] == 3


# ---------------------------------------------------------------- 3. an input changed after a run


def test_a_changed_input_is_noticed_and_named(tmp_path):
    rows = [{"text": f"document {i} of the first version"} for i in range(30)]
    write_jsonl(tmp_path / "in.jsonl", rows)
    write_jsonl(tmp_path / "other.jsonl", rows[:3])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["in.jsonl", "other.jsonl"]}], "stages": ["length"]}
    assert run_config(raw, tmp_path / "out", tmp_path).docs == 33
    with open(tmp_path / "in.jsonl", "a", encoding="utf-8") as f:      # appended lines: a new size
        f.write(json.dumps({"text": "a document appended later"}) + "\n")
    with pytest.raises(runner_module.InputChanged, match=r"in\.jsonl.*changed.*--overwrite"):
        run_config(raw, tmp_path / "out", tmp_path)
    redone = run_config(raw, tmp_path / "out", tmp_path, overwrite=True)
    assert redone.ok and not redone.already_complete and redone.docs == 34
    # the same bytes written again (a regenerated or copied input): a new modification time, said, not redone
    data = (tmp_path / "other.jsonl").read_bytes()
    os.utime(tmp_path / "other.jsonl", ns=(1, 1))
    again = run_config(raw, tmp_path / "out", tmp_path)
    assert again.already_complete and again.inputs_touched == [str(tmp_path / "other.jsonl")]
    # an edit that keeps the size: the content check sees it
    (tmp_path / "other.jsonl").write_bytes(data.replace(b"document 0", b"document X"))
    with pytest.raises(runner_module.InputChanged, match=r"other\.jsonl \(content changed"):
        run_config(raw, tmp_path / "out", tmp_path)


# ---------------------------------------------------------------- 4. an unreadable folder inside an input


def test_an_unreadable_subfolder_is_counted_and_reported(tmp_path):
    inputs = tmp_path / "in"
    (inputs / "locked").mkdir(parents=True)
    write_jsonl(inputs / "a.jsonl", [{"text": f"readable document {i}"} for i in range(10)])
    write_jsonl(inputs / "locked" / "b.jsonl", [{"text": "never read"}])
    os.chmod(inputs / "locked", 0)
    try:
        proc = subprocess.Popen([*no_dac_prefix(), *CURATE, "run", "-i", "in", "-f", "jsonl", "--stages", "length",
                                 "-o", "out", "--no-progress", "-w", "1", "--set", "run.executor=ray"],
                                cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        os.chmod(inputs / "locked", 0o755)
    assert proc.returncode == 0, stderr[-2000:]
    # the run's embedded Ray left no session folder behind (Ray names it after the driver's pid)
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "ray", f"session_*_{proc.pid}"))
    said = " ".join(stderr.split())
    assert "locked" in said and "PermissionError" in said, said[-1000:]
    con = stats.connect(str(tmp_path / "out"))
    assert con.execute("SELECT count(*) FROM docs").fetchone()[0] == 10
    reason, path = con.execute("SELECT reject_reason, path FROM rejects").fetchone()
    assert reason.startswith("read-error:PermissionError") and path.endswith("/in/locked")
    assert con.execute("SELECT sum(rejected) FROM stats WHERE stage = 'read'").fetchone()[0] == 1


# ---------------------------------------------------------------- 5. empty results that look like success


def test_inputs_that_yield_nothing_are_warned_about(tmp_path):
    (tmp_path / "plain.txt.gz").write_bytes(gzip.compress(b"just some plain text\nnot a WARC file\n"))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    write_jsonl(tmp_path / "full.jsonl", [{"text": "one document"}])
    (tmp_path / "pipeline.yaml").write_text(
        "inputs:\n"
        "  - {source: cc, format: warc, paths: [plain.txt.gz]}\n"
        "  - {source: notes, format: jsonl, paths: [empty.jsonl, full.jsonl]}\n"
        "stages: [length]\n")
    result = cli("run", "pipeline.yaml", "-o", "out", "--no-progress", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert re.search(r"warning.*2 inputs? yielded no records", said), said[-1500:]
    assert "plain.txt.gz (warc)" in said and "empty.jsonl (jsonl)" in said and "full.jsonl" not in said.split("warning")[-1]


def test_a_run_that_never_starts_creates_nothing(tmp_path):
    result = cli("run", "-i", "missing.jsonl", "-f", "jsonl", "-o", "out", cwd=tmp_path)
    assert result.exit_code == 2 and "no input matches" in result.output
    assert not (tmp_path / "out").exists()
    (tmp_path / "pipeline.yaml").write_text("inputs:\n  - {source: x, format: jsonl, paths: [nothing/*.jsonl]}\n")
    result = cli("run", "pipeline.yaml", "-o", "out2", cwd=tmp_path)
    assert result.exit_code == 2 and not (tmp_path / "out2").exists()


# ---------------------------------------------------------------- 7, 8. several --input values, run.* from --set


def test_input_takes_several_values_and_run_settings_can_be_set(tmp_path):
    for name in ("x", "y", "z"):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": f"document from {name}"}])
    result = cli("run", "--input", "x.jsonl", "y.jsonl", "z.jsonl", "-f", "jsonl", "--stages", "length",
                 "--set", "run.task_mb=8", "--set", "run.batch_rows=10", "-o", "out", "--no-progress", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["inputs"][0]["files"]) == 3
    assert manifest["config"]["run"]["task_mb"] == 8 and manifest["config"]["run"]["batch_rows"] == 10
    bad = cli("run", "-i", "x.jsonl", "-f", "jsonl", "--set", "run.task_mb=-1", "-o", "out2", cwd=tmp_path)
    assert bad.exit_code == 2 and "run.task_mb" in bad.output and not (tmp_path / "out2").exists()


# ---------------------------------------------------------------- 9. one run at a time per output folder


def test_a_second_run_on_a_locked_output_is_refused_and_a_stale_lock_taken_over(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "a document"}])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["in.jsonl"]}], "stages": ["length"]}
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, os, sys, time\n"
                               f"f = open({str(out / '.curate.lock')!r}, 'a+')\n"
                               "fcntl.flock(f, fcntl.LOCK_EX)\n"
                               "f.truncate(0); f.write(f'pid {os.getpid()}'); f.flush()\n"
                               "print('held', flush=True); time.sleep(120)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(runner_module.OutputLocked, match=rf"another curate run .*pid {holder.pid}.* holds"):
            run_config(raw, out, tmp_path)
        result = cli("run", "-i", "in.jsonl", "-f", "jsonl", "--stages", "length", "-o", "out", cwd=tmp_path)
        assert result.exit_code == 1 and "holds" in result.output
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed: its lock file remains, the lock itself went with the process
    summary = run_config(raw, out, tmp_path)
    assert summary.ok and summary.docs == 1
    lock = out / ".curate.lock"
    with open(lock, "a+") as f:  # released once the run ended
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ---------------------------------------------------------------- 10. a database file that survives a move


def test_database_views_survive_moving_the_output(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "short"}, {"text": "a long enough document"}])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["in.jsonl"]}],
           "stages": [{"length": {"min_chars": 10}}]}
    run_config(raw, tmp_path / "out", tmp_path)
    assert cli("stats", "out", "--db", "out/views.duckdb", cwd=tmp_path).exit_code == 0
    assert cli("stats", "out", "--db", "side.duckdb", cwd=tmp_path).exit_code == 0
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "out"), str(moved))
    # opened from its own folder (as README says), the database inside the moved folder still works
    done = subprocess.run([sys.executable, "-c", "import duckdb; c = duckdb.connect('views.duckdb', read_only=True); "
                           "print(c.execute('SELECT count(*) FROM docs').fetchone()[0], "
                           "c.execute('SELECT count(*) FROM rejects').fetchone()[0])"],
                          cwd=moved, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["1", "1"], done.stderr[-1000:]
    # a database kept elsewhere is refreshed by running the same command on the new location
    assert cli("stats", str(moved), "--db", "side.duckdb", cwd=tmp_path).exit_code == 0
    con = duckdb.connect(str(tmp_path / "side.duckdb"), read_only=True)
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert con.execute("SELECT count(*) FROM docs").fetchone()[0] == 1
    finally:
        os.chdir(previous)


def test_database_and_output_path_mistakes_are_one_line_errors(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "a long enough document"}])
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["in.jsonl"]}], "stages": ["length"]}
    run_config(raw, tmp_path / "out", tmp_path)
    for args, says in ((["stats", "out", "--db", "no/such/folder/x.duckdb"], "no/such/folder"),
                       (["stats", "out", "--db", "in.jsonl"], "in.jsonl")):
        result = cli(*args, cwd=tmp_path)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and says in result.output, result.output
    assert cli("stats", "out", "--db", "in.jsonl", cwd=tmp_path).exit_code == 2
    assert (tmp_path / "in.jsonl").read_text().startswith('{"text"')  # not overwritten by a database


def test_the_funnel_fits_the_terminal(tmp_path):
    texts = [{"text": f"document {i} " + "word " * (i % 7)} for i in range(200)]
    write_jsonl(tmp_path / "in.jsonl", texts)
    raw = {"inputs": [{"source": "a-rather-long-source-name", "format": "jsonl", "paths": ["in.jsonl"]}],
           "stages": [{"length": {"min_chars": 25}}]}
    run_config(raw, tmp_path / "out", tmp_path)
    for width in (80, 100):
        done = subprocess.run([*CURATE, "stats", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": str(width)})
        assert done.returncode == 0, done.stderr
        assert "length:too-short" in done.stdout.replace("\n", "").replace("│", "").replace(" ", "") or \
            "too-short" in done.stdout
        assert max(len(line) for line in done.stdout.splitlines()) <= width, done.stdout
