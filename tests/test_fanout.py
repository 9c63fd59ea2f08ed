"""One big file runs on every worker (issue 16.5): a file is cut into tasks sized from the input and the
worker count, and a file that cannot be cut by byte offset (.gz, WARC) is read in parts; the output is
the same as reading the file whole (same documents kept and rejected, same ids), and a rerun after a
kill redoes exactly the unfinished parts, with the cut the run started with."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.readers import Task, reader_class
from curate.readers.sizing import FLOOR_BYTES, MAX_PARTS, RANGE_SLACK, TaskSizing, byte_ranges, part_ranges
from curate.tests.corpora import book_paragraphs, chinese_paragraphs

CURATE = [sys.executable, "-m", "curate.cli"]
TEST_STAGES = "curate.tests.pipeline_stages"
MB = 1 << 20


# -- planning -------------------------------------------------------------------------------------------------


def test_tasks_are_sized_from_the_input_and_the_workers():
    sizing = TaskSizing(64 * MB, workers=2)
    target, fanout = sizing.targets(80 * MB)
    assert target == fanout == 20 * MB  # 2 tasks per worker
    assert len(byte_ranges(80 * MB, target, legacy=False)) == 4
    assert byte_ranges(20 * MB + 999, target, legacy=False) == [(0, None)]  # the same in four files: 4 tasks
    assert len(part_ranges(25 * MB, 80 * MB, fanout)) == 4  # a .gz of 80 MB of text: 4 parts
    # task_mb stays the upper bound of a byte range; a compressed file is cut only to keep workers busy
    target, fanout = TaskSizing(64 * MB, workers=2).targets(4000 * MB)
    assert target == 64 * MB and fanout == 1000 * MB
    assert part_ranges(300 * MB, 900 * MB, fanout) == [(0, None)]
    # a small input is not cut below the floor; a huge compressed file into MAX_PARTS at most
    target, fanout = TaskSizing(64 * MB, workers=16).targets(6 * MB)
    assert target == fanout == FLOOR_BYTES
    assert len(part_ranges(10_000 * MB, 30_000 * MB, 1 * MB)) == MAX_PARTS
    # no worker count (a cluster): task_mb alone and the old cut, no parts
    assert TaskSizing(64 * MB).targets(80 * MB) == (64 * MB, None)
    assert byte_ranges(80 * MB, 64 * MB, legacy=True) == [(0, None)]
    assert len(byte_ranges(97 * MB, 64 * MB, legacy=True)) == 2


def test_the_largest_tasks_are_handed_out_first():
    """Longest first: the small tasks fill the end of a run instead of one worker finishing a big file alone.
    A cut weighs its share of the file, a .gz what it decompresses to; tasks of unknown size keep their place."""
    from curate.runner import largest_first

    inputs = [{"files": [{"path": "a.jsonl", "bytes": 10 * MB}, {"path": "big.jsonl", "bytes": 90 * MB},
                         {"path": "c.warc.gz", "bytes": 20 * MB}, {"path": "d.jsonl", "bytes": 30 * MB}]}]
    tasks = [Task("s", "jsonl", "a.jsonl", index=0), Task("s", "jsonl", "big.jsonl", 0, 45 * MB, index=1),
             Task("s", "jsonl", "big.jsonl", 45 * MB, None, index=2), Task("s", "warc", "c.warc.gz", index=3),
             Task("s", "jsonl", "d.jsonl", index=4), Task("s", "jsonl", "shard-0.parquet", index=5),
             Task("s", "jsonl", "shard-1.parquet", index=6)]
    order = [t.index for t in largest_first(tasks, inputs)]
    assert order == [3, 1, 2, 4, 0, 5, 6]  # c.warc.gz: 20 MB compressed, read as more than the 45 MB parts


def test_a_remote_compressed_file_is_not_read_in_parts():
    """Each part reads a file from its start: over the network that would download it once per part."""
    for fmt, url in [("jsonl", "https://example.invalid/big.jsonl.gz"), ("warc", "s3://bucket/cc.warc.gz")]:
        assert reader_class(fmt)(fmt).tasks([url], MB, 1) == [Task(fmt, fmt, url)]


def test_ranges_cover_the_file_once():
    for size, target in [(1000, 7), (10 * MB + 3, MB), (5, 1)]:
        ranges = byte_ranges(size, target, legacy=False)
        assert ranges[0][0] == 0 and ranges[-1][1] is None
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all((end or size) - start <= target * RANGE_SLACK + 1 for start, end in ranges)


def test_every_format_is_planned_with_a_sized_cut(shared_data, tmp_path):
    """plan_tasks hands every reader the sized cut (each reader's ``tasks`` takes it)."""
    import pyarrow as pa

    from curate.config import from_dict
    from curate.runner import plan_tasks

    write_docs(tmp_path / "docs.jsonl", text_docs(shared_data))
    pq.write_table(pa.table({"text": text_docs(shared_data)}), tmp_path / "docs.parquet", row_group_size=50)
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "main.py").write_text("print('hello')\n")
    (tmp_path / "page.html").write_text("<html><body><p>hello</p></body></html>")
    wayback = shared_data / "warc/copycat-wayback/snapshot-wayback-topic-02.warc.gz"
    inputs = [("jsonl", [str(tmp_path / "docs.jsonl")]), ("parquet", [str(tmp_path / "docs.parquet")]),
              ("warc", [str(wayback)]), ("txt", [str(shared_data / "books/gutenberg/pg84-0.txt")]),
              ("html", [str(tmp_path / "page.html")]), ("code", [str(tmp_path / "repo")]),
              ("wet", [str(shared_data / "warc/cc_net/sample.warc.wet")])]
    raw = {"inputs": [{"source": fmt, "format": fmt, "paths": paths} for fmt, paths in inputs],
           "stages": ["length"], "run": {"task_mb": 0.25}}
    config = from_dict(raw, file=str(tmp_path / "pipeline.yaml"), base_dir=str(tmp_path))
    tasks, _, _ = plan_tasks(config, TaskSizing(MB // 4, workers=2))
    per_source = Counter(t.source for t in tasks)
    assert per_source["jsonl"] >= 4 and per_source["parquet"] >= 3 and per_source["warc"] >= 2
    assert per_source["txt"] == per_source["html"] == per_source["code"] == per_source["wet"] == 1
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert len({t.task_id for t in tasks}) == len(tasks)


def test_a_rerun_reuses_the_recorded_cut_and_refuses_an_older_curates(shared_data, tmp_path):
    from curate.config import from_dict
    from curate.params import ConfigError
    from curate.readers.sizing import sizing_for_run
    from curate.runner import plan_tasks

    write_docs(tmp_path / "docs.jsonl", text_docs(shared_data))
    raw = {"inputs": [{"source": "web", "format": "jsonl", "paths": ["docs.jsonl"]}], "stages": ["length"],
           "run": {"task_mb": 0.25}}
    config = from_dict(raw, file=str(tmp_path / "pipeline.yaml"), base_dir=str(tmp_path))
    manifest = tmp_path / "out" / "manifest.json"
    manifest.parent.mkdir()
    assert sizing_for_run(str(manifest), config.fingerprint(), 0.25, 2) == TaskSizing(MB // 4, 2)
    recorded = {"fingerprint": config.fingerprint(), "complete": False, "config": config.to_dict(),
                "plan": TaskSizing(MB // 4, 2).describe()}
    manifest.write_text(json.dumps(recorded))
    assert sizing_for_run(str(manifest), config.fingerprint(), 8, 1) == TaskSizing(MB // 4, 2)
    assert sizing_for_run(str(manifest), "another config", 8, 1) == TaskSizing(8 * MB, 1)
    del recorded["plan"]
    manifest.write_text(json.dumps({**recorded, "curate_version": "0.9"}))
    older = sizing_for_run(str(manifest), config.fingerprint(), 8, 1)
    assert older.older_run == "0.9" and older.workers is None and older.task_bytes == MB // 4
    with pytest.raises(ConfigError, match="started by curate 0.9"):
        plan_tasks(config, older)  # the old cut of 1 MB at 0.25 MB made byte ranges, named otherwise then


# -- readers: parts give what the whole file gives ----------------------------------------------------------


def read_all(reader, tasks: list[Task]):
    """What run_task keeps of the tasks: documents, rejects, skip counts, records; a raised error ends a task."""
    docs, rejects, skipped, records, errors = [], [], Counter(), 0, []
    for task in tasks:
        try:
            for batch in reader.read(task):
                text = "html" if "html" in batch.docs.column_names else "text"
                docs += zip(batch.docs["id"].to_pylist(), batch.docs[text].to_pylist())
                if batch.rejects is not None:
                    rejects += zip(batch.rejects["id"].to_pylist(), batch.rejects["reject_reason"].to_pylist())
                skipped.update(batch.skipped)
                records += batch.records
        except Exception as err:  # noqa: BLE001 - as run_task: the rest of this task is a read error
            errors.append(type(err).__name__)
    return docs, rejects, skipped, records, errors


def assert_parts_match_whole(fmt: str, path: Path, parts_wanted: int = 5) -> list[Task]:
    reader = reader_class(fmt)(fmt)
    size = path.stat().st_size
    tasks = reader.tasks([str(path)], MB, max(1, size * 3 // parts_wanted))
    assert len(tasks) >= 2
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert [t.task_id for t in tasks] == sorted(t.task_id for t in tasks)  # file order
    whole = read_all(reader, [Task(fmt, fmt, str(path))])
    assert read_all(reader, tasks) == whole, path
    return tasks


@pytest.mark.parametrize("fmt,pattern", [("warc", "*/*.warc.gz"), ("warc", "*/*.warc"), ("arc", "*/*.arc*"),
                                         ("wet", "*/*.wet*")])
def test_every_archive_of_the_shared_data_reads_the_same_in_parts(shared_data, fmt, pattern):
    paths = sorted((shared_data / "warc").glob(pattern))
    assert paths
    for path in paths:
        assert_parts_match_whole(fmt, path)


def test_a_large_warc_is_dealt_to_every_part(shared_data, tmp_path):
    """Per-record gzip (Common Crawl's layout), one gzip member for the whole file, a truncated and a
    corrupted one: every part gets records, and together the same ones, counted the same."""
    reader = reader_class("warc")("warc")
    raw = gzip.decompress((shared_data / "warc/copycat-wayback/snapshot-wayback-topic-02.warc.gz").read_bytes())
    one_member = gzip.compress(raw)
    damaged = bytearray(one_member)
    damaged[len(damaged) // 2:len(damaged) // 2 + 50] = b"x" * 50
    wayback = shared_data / "warc/copycat-wayback/snapshot-wayback-topic-02.warc.gz"
    files = {"per-record.warc.gz": wayback.read_bytes(),
             "one-member.warc.gz": one_member, "truncated.warc.gz": one_member[:len(one_member) * 2 // 3],
             "corrupt.warc.gz": bytes(damaged)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        tasks = assert_parts_match_whole("warc", tmp_path / name, parts_wanted=4)
        per_part = [len(read_all(reader, [t])[0]) for t in tasks]
        assert all(n > 0 for n in per_part), (name, per_part)
    skipped = read_all(reader, [Task("warc", "warc", str(tmp_path / "truncated.warc.gz"))])[2]
    assert skipped["unreadable:truncated-gzip"] == 1  # counted once, by the first part


def text_docs(shared_data) -> list[str]:
    """~1 MB of real documents (six paragraphs of an English or Chinese book each), with planted exact
    copies far from their originals, so that dedup must pick the same survivor however the file is cut."""
    paragraphs = book_paragraphs(shared_data) + chinese_paragraphs(shared_data)
    docs = ["\n\n".join(paragraphs[i:i + 6]) for i in range(0, len(paragraphs), 6)]
    docs = docs[::2]
    while sum(len(d.encode()) for d in docs) > MB:
        docs.pop()
    for k in range(10):
        docs.insert(len(docs) - 5 * k, docs[7 * k + 1])
    return docs


def write_docs(path: Path, docs: list[str], *, bad_lines: bool = True) -> Path:
    lines = [json.dumps({"text": d, "url": f"https://example.org/{i}"}) for i, d in enumerate(docs)]
    if bad_lines:
        lines[len(lines) // 3] = '{"text": "cut short'
        lines[2 * len(lines) // 3] = '{"no_text": 1}'
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def test_a_jsonl_gz_reads_the_same_in_parts_damaged_or_not(shared_data, tmp_path):
    docs = text_docs(shared_data)
    path = write_docs(tmp_path / "docs.jsonl.gz", docs)
    tasks = assert_parts_match_whole("jsonl", path)
    reader = reader_class("jsonl")("jsonl")
    assert all(read_all(reader, [t])[0] for t in tasks)
    data = path.read_bytes()
    (tmp_path / "cut.jsonl.gz").write_bytes(data[:len(data) * 3 // 4])
    tasks = assert_parts_match_whole("jsonl", tmp_path / "cut.jsonl.gz")
    assert [read_all(reader, [t])[4] for t in tasks][-2:] == [[], ["EOFError"]]  # the last part reports it


# -- curate run: one file in parts, the same output as one task -----------------------------------------------


def curate(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([*CURATE, *args, "--no-progress"], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def output_of(out: Path) -> tuple[list, list, dict]:
    """Kept (id, text) and rejected (id, reason) rows, and the manifest."""
    def rows(folder: str, columns: list[str]) -> list:
        found = []
        for shard in sorted((out / folder).glob("*.parquet")):
            table = pq.read_table(shard, columns=columns)
            found += zip(*(table[c].to_pylist() for c in columns))
        return sorted(found, key=lambda row: [str(v) for v in row])
    manifest = json.loads((out / "manifest.json").read_text())
    return rows("docs", ["id", "text"]), rows("rejects", ["id", "reject_reason"]), manifest


def segment0_tasks(manifest: dict) -> list[dict]:
    return [t for t in manifest["tasks"].values() if t["segment"] == 0]


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz"])
def test_curate_run_on_one_file_in_parts_keeps_and_rejects_the_same(shared_data, tmp_path, name):
    """The default pipeline (dedup with ``keep: first`` included) on one file: 2 workers cut it into
    parts, 1 worker reads it whole; the same documents are kept and rejected, with the same ids."""
    write_docs(tmp_path / name, text_docs(shared_data))
    curate("run", "-i", name, "-f", "jsonl", "-o", "parts", "-w", "2", "--set", "run.task_mb=0.25", cwd=tmp_path)
    curate("run", "-i", name, "-f", "jsonl", "-o", "whole", "-w", "1", cwd=tmp_path)
    parts, whole = output_of(tmp_path / "parts"), output_of(tmp_path / "whole")
    assert len(segment0_tasks(parts[2])) >= 3 and len(segment0_tasks(whole[2])) == 1
    assert parts[2]["plan"]["workers"] == 2
    assert len(parts[0]) > 150 and len(parts[1]) > 10  # the comparison is about something
    assert any(reason.startswith("dedup") or "dup" in reason for _, reason in parts[1])
    assert parts[0] == whole[0]
    assert parts[1] == whole[1]


def test_curate_run_on_warc_gz_in_parts_keeps_and_rejects_the_same(shared_data, tmp_path):
    """WARC.gz through the default pipeline (extraction included): read in parts, as read whole."""
    name = "snapshot-wayback-topic-02.warc.gz"
    (tmp_path / name).write_bytes((shared_data / "warc/copycat-wayback" / name).read_bytes())
    inputs = ["-i", name, "-f", "warc"]
    curate("run", *inputs, "-o", "parts", "-w", "2", "--set", "run.task_mb=0.1", cwd=tmp_path)
    curate("run", *inputs, "-o", "whole", "-w", "1", cwd=tmp_path)
    parts, whole = output_of(tmp_path / "parts"), output_of(tmp_path / "whole")
    assert len(segment0_tasks(parts[2])) >= 3 and len(segment0_tasks(whole[2])) == 1
    assert len(parts[0]) > 20
    assert parts[0] == whole[0]
    assert parts[1] == whole[1]


def test_a_killed_run_in_parts_resumes_with_its_own_cut(shared_data, tmp_path):
    """Killed after some parts finished, the rerun (with another --workers and task_mb, which would cut
    the file otherwise) redoes exactly the unfinished parts: every document once, as in a run without a kill."""
    write_docs(tmp_path / "docs.jsonl", text_docs(shared_data))
    (tmp_path / "pipeline.yaml").write_text(
        "inputs:\n  - {source: web, format: jsonl, paths: [docs.jsonl]}\n"
        f"stages:\n  - length\n  - {TEST_STAGES}:Slow: {{seconds_per_batch: 0.15}}\n  - dedup\n"
        "run: {batch_rows: 25, task_mb: 0.125}\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*CURATE, "run", "pipeline.yaml", "-o", str(out), "-w", "2", "--no-progress"],
                            cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "stats").glob("*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # Ray workers of the killed driver (if it used Ray) finish or die
    finished = len(list((out / "stats").glob("*.parquet")))
    manifest = json.loads((out / "manifest.json").read_text())
    planned = manifest["plan"]
    assert not manifest["complete"] and planned["workers"] == 2

    # alone, -w 1 and task_mb 8 would read the file as one task, overlapping the finished parts
    resumed = curate("run", "pipeline.yaml", "-o", str(out), "-w", "1", "--set", "run.task_mb=8", cwd=tmp_path)
    said = " ".join(resumed.stdout.split() + resumed.stderr.split())
    assert f"{finished} already done" in said, said[-600:]
    curate("run", "pipeline.yaml", "-o", str(tmp_path / "fresh"), "-w", "2", cwd=tmp_path)
    again, fresh = output_of(out), output_of(tmp_path / "fresh")
    assert again[2]["complete"] and again[2]["plan"] == planned
    assert len(segment0_tasks(again[2])) == len(segment0_tasks(fresh[2])) >= 4
    assert again[0] == fresh[0] and again[1] == fresh[1]
    ids = [row[0] for row in again[0] + again[1]]
    assert len(ids) == len(set(ids))
