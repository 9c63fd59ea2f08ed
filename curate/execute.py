"""Run one task: read (or load a shard), push record batches through the stages, land the output.

This is the whole per-task life cycle, free of Ray so it can be tested and
profiled on its own; ``curate.runner`` calls it inside Ray workers.

Order of the commit, which is what makes resume safe: kept docs and rejects are
written under temporary names and renamed into place, and only then the task's
stats file is written. A task whose stats file exists is finished; anything
else it left behind is deleted and the task redone. In an object store the same
order holds with uploads in place of renames (``curate.shards``, ``curate.storage``).
"""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import storage
from curate.output_schema import check_stage_output
from curate.readers import ReadBatch, Reader, Task
from curate.readers.fileio import is_local_dir, printable
from curate.schema import REJECT_REASON, conform, doc_id, repair_utf8, split_invalid_utf8, text_bytes, with_reject
from curate.shards import ShardWriter, remove_stale, write_table_atomic
from curate.stage import GlobalStage, Stage, StageResult

READ_STAGE = "read"

STATS_SCHEMA = pa.schema([
    ("task_id", pa.string()),
    ("segment", pa.int32()),
    ("source", pa.string()),
    ("path", pa.string()),
    ("stage", pa.string()),
    ("position", pa.int32()),
    ("docs_in", pa.int64()),
    ("docs_out", pa.int64()),
    ("bytes_in", pa.int64()),
    ("bytes_out", pa.int64()),
    ("rejected", pa.int64()),
    ("skipped", pa.int64()),
    ("seconds", pa.float64()),
    ("reasons", pa.list_(pa.struct([("reason", pa.string()), ("kind", pa.string()), ("docs", pa.int64())]))),
])


@dataclass
class StageCounter:
    stage: str
    position: int
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    rejected: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)


@dataclass
class TaskPlan:
    """What a worker needs to run the tasks of one segment of the pipeline."""

    segment: int
    stages: list[tuple[Stage, list[str] | None, list[str]]]  # (stage, sources, skip_sources)
    global_stage: GlobalStage | None = None  # applied first, from the decisions in global_workdir
    global_workdir: str | None = None
    docs_dir: str = ""        # where kept documents land (final docs/ or an intermediate dir)
    rejects_dir: str = ""
    stats_dir: str = ""
    batch_rows: int = 1000
    shard_rows: int = 200_000
    docs_schema: pa.Schema | None = None     # the run's one schema for docs/ (None: shards keep their own)
    rejects_schema: pa.Schema | None = None  # and for rejects/ (curate.output_schema)

    def stages_for(self, source: str) -> list[Stage]:
        chosen = []
        for stage, sources, skip in self.stages:
            if source in skip or (sources is not None and source not in sources):
                continue
            chosen.append(stage)
        return chosen


@dataclass
class TaskOutcome:
    task_id: str
    segment: int
    source: str
    docs: int
    rejects: int
    bytes_out: int
    seconds: float
    shards: list[str]
    node: str = ""  # the Ray node that ran it (set by curate.pool): where a cluster's work went


def stats_path(plan: TaskPlan, task_id: str) -> str:
    return storage.join(plan.stats_dir, f"{task_id}.parquet")


def is_done(plan: TaskPlan, task_id: str) -> bool:
    return storage.exists(stats_path(plan, task_id))


def done_task_ids(plan: TaskPlan) -> set[str]:
    """The finished tasks, from one listing of the stats folder (one request per 1,000 objects in an
    object store, instead of one per task)."""
    return {name.removesuffix(".parquet") for name in storage.listdir(plan.stats_dir) if name.endswith(".parquet")}


def run_task(
    task: Task,
    plan: TaskPlan,
    reader: Reader | None,
    progress: Callable[[str, int, int, str], None] | None = None,
) -> TaskOutcome:
    """Process ``task`` end to end and commit its output; returns its counts.

    ``progress(task_id, docs kept so far, records read so far, what runs now)`` is called when a
    batch has been read and before each stage works on it, so that a long task shows where it is.
    """
    task_id = task_id_for(task, plan.segment)
    started = time.perf_counter()
    for directory in (plan.docs_dir, plan.rejects_dir):
        remove_stale(directory, task_id)
    docs_writer = ShardWriter(plan.docs_dir, task_id, max_rows=plan.shard_rows, schema=plan.docs_schema)
    reject_writers: dict[str, ShardWriter] = {}

    def reject_writer(stage_name: str) -> ShardWriter:
        if stage_name not in reject_writers:
            reject_writers[stage_name] = ShardWriter(plan.rejects_dir, f"{task_id}.{stage_name}", max_rows=plan.shard_rows,
                                                     schema=plan.rejects_schema)
        return reject_writers[stage_name]

    stages = plan.stages_for(task.source)
    if plan.global_stage is not None:
        stages = [plan.global_stage, *stages]
    for stage in stages:
        stage.ensure_setup()
    read_counter = StageCounter(READ_STAGE, 0)
    counters = [StageCounter(stage.name, i + 1) for i, stage in enumerate(stages)]
    docs_done = 0

    def report(doing: str) -> None:
        if progress is not None:
            progress(task_id, docs_done, read_counter.docs_in, doing)

    try:
        for batch in _batches(task, plan, reader, read_counter):
            if batch.rejects is not None and batch.rejects.num_rows:
                reject_writer(READ_STAGE).write(conform(with_reject(
                    batch.rejects.drop_columns([REJECT_REASON]), READ_STAGE, batch.rejects[REJECT_REASON])))
            table = batch.docs
            if table is None or table.num_rows == 0:
                continue
            report(READ_STAGE)
            table = _run_stages(conform(table), stages, counters, reject_writer, report)
            docs_writer.write(table)
            docs_done += table.num_rows
            report("write")
        shards = docs_writer.commit()
        for writer in reject_writers.values():
            writer.commit()
    except BaseException:
        docs_writer.abort()
        for writer in reject_writers.values():
            writer.abort()
        raise
    seconds = time.perf_counter() - started
    # later segments re-read our own shards: their "read" would count documents twice
    counted = [read_counter, *counters] if plan.segment == 0 else counters
    rows = [_stats_row(task, task_id, plan.segment, c) for c in counted]
    write_table_atomic(stats_path(plan, task_id), pa.Table.from_pylist(rows, schema=STATS_SCHEMA))
    rejected = sum(sum(c.rejected.values()) for c in [read_counter, *counters])
    bytes_out = counters[-1].bytes_out if counters else read_counter.bytes_out
    return TaskOutcome(task_id, plan.segment, task.source, docs_writer.rows, rejected, bytes_out, seconds, shards)


def task_id_for(task: Task, segment: int) -> str:
    """Tasks of later segments are named after the shard they process, prefixed with the segment."""
    if segment == 0:
        return task.task_id
    return f"s{segment}-" + os.path.basename(task.path).removesuffix(".parquet")


def _batches(task: Task, plan: TaskPlan, reader: Reader | None, counter: StageCounter) -> Iterator[ReadBatch]:
    """The task's input as ReadBatches; a reader that raises becomes a counted, quarantined reject."""
    started = time.perf_counter()
    if reader is None:  # a later segment: the input is a shard we wrote ourselves
        source = pq.ParquetFile(storage.open_read(task.path)) if storage.is_remote(task.path) else pq.ParquetFile(task.path)
        iterator: Iterator[ReadBatch] = (
            ReadBatch(docs=pa.Table.from_batches([b]), records=b.num_rows)
            for b in source.iter_batches(batch_size=plan.batch_rows)
        )
    elif is_local_dir(task.path) and not reader.whole_directories:
        iterator = _unlisted_folder(task.path)
    else:
        iterator = (_valid_utf8(b) for b in reader.read(task))
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        except Exception as err:  # corrupt input: keep what was read, quarantine the rest with the reason
            reason = f"read-error:{type(err).__name__}: {str(err)[:300]}"
            rejects = pa.table({
                "id": [doc_id(task.source, f"{task.path}@{task.start}:read-error")],
                "source": [task.source], "text": pa.nulls(1, pa.string()), "url": pa.nulls(1, pa.string()),
                "path": [printable(task.path)], "error_traceback": [traceback.format_exc(limit=6)[-4000:]],
                REJECT_REASON: [reason],
            })
            counter.docs_in += 1
            counter.rejected[reason.split(": ")[0]] += 1
            counter.seconds += time.perf_counter() - started
            yield ReadBatch(rejects=rejects)
            return
        counter.docs_in += batch.records or ((batch.docs.num_rows if batch.docs is not None else 0)
                                             + (batch.rejects.num_rows if batch.rejects is not None else 0)
                                             + sum(batch.skipped.values()))
        if batch.docs is not None:
            counter.docs_out += batch.docs.num_rows
            counter.bytes_out += text_bytes(batch.docs)
        if batch.rejects is not None and batch.rejects.num_rows:
            counter.rejected.update(batch.rejects[REJECT_REASON].to_pylist())
        counter.skipped.update(batch.skipped)
        counter.seconds += time.perf_counter() - started
        yield batch
        started = time.perf_counter()
    counter.seconds += time.perf_counter() - started
    counter.bytes_in = counter.bytes_out  # what the reader produced is what entered the pipeline


def _unlisted_folder(path: str) -> Iterator[ReadBatch]:
    """A folder inside an input that could not be listed when the run was planned: its error, as a read error."""
    os.listdir(path)  # raises the real reason (PermissionError ...)
    raise PermissionError(f"{path}: a folder that could not be listed when the run was planned")
    yield  # pragma: no cover - a generator that only raises


def _valid_utf8(batch: ReadBatch) -> ReadBatch:
    """No string that is not UTF-8 gets past the reader: DuckDB refuses every query on a file holding one.

    Documents with one become rejects (``bad-utf8:<column>``); their strings, and those of the reader's
    own rejects, are repaired (U+FFFD) so that the quarantine itself stays readable.
    """
    rejects = batch.rejects
    if rejects is not None and rejects.num_rows:
        rejects = repair_utf8(rejects)
    docs = batch.docs
    if docs is not None and docs.num_rows:
        docs, moved, reasons = split_invalid_utf8(docs)
        if moved is not None:
            moved = moved.append_column(REJECT_REASON, pa.array(reasons, pa.string()))
            rejects = moved if rejects is None or not rejects.num_rows else pa.concat_tables(
                [rejects, moved], promote_options="permissive")
    return ReadBatch(docs=docs, rejects=rejects, skipped=batch.skipped, records=batch.records)


def _run_stages(table: pa.Table, stages: list[Stage], counters: list[StageCounter], reject_writer,
                report: Callable[[str], None] = lambda doing: None) -> pa.Table:
    for stage, counter in zip(stages, counters):
        if table.num_rows == 0:
            break
        report(stage.name)
        started = time.perf_counter()
        counter.docs_in += table.num_rows
        counter.bytes_in += text_bytes(table)
        result = _process_safely(stage, table)
        check_stage_output(stage, table.schema, result.table.schema)  # a broken declaration fails the task
        out = result.table
        if result.reasons is not None:
            reasons = result.reasons
            if not isinstance(reasons, (pa.Array, pa.ChunkedArray)):
                reasons = pa.array(reasons, pa.string())
            dropped = pc.is_valid(reasons)
            if pc.any(dropped).as_py():
                rejects = with_reject(out.filter(dropped), stage.name, reasons.filter(dropped))
                counter.rejected.update(rejects[REJECT_REASON].to_pylist())
                reject_writer(stage.name).write(rejects)
                out = out.filter(pc.invert(dropped))
        counter.docs_out += out.num_rows
        counter.bytes_out += text_bytes(out)
        counter.seconds += time.perf_counter() - started
        table = out
    return table


def _process_safely(stage: Stage, table: pa.Table) -> StageResult:
    """Run a stage on a batch; if it raises, find the rows that make it raise and reject only those."""
    try:
        return _checked(stage, table, stage.process(table))
    except Exception:
        if table.num_rows == 1:
            raise
    kept, reasons = [], []
    for i in range(table.num_rows):
        row = table.slice(i, 1)
        try:
            result = _checked(stage, row, stage.process(row))
            kept.append(result.table)
            r = result.reasons
            reasons.append(None if r is None else (r[0].as_py() if isinstance(r, (pa.Array, pa.ChunkedArray)) else r[0]))
        except Exception as err:
            kept.append(row)
            reasons.append(f"error:{type(err).__name__}")
    merged = pa.concat_tables(kept, promote_options="permissive")
    return StageResult(merged, pa.array(reasons, pa.string()))


def _checked(stage: Stage, table: pa.Table, result: StageResult) -> StageResult:
    if not isinstance(result, StageResult):
        raise TypeError(f"stage {stage.name} returned {type(result).__name__}, expected StageResult")
    if result.table.num_rows != table.num_rows:
        raise ValueError(f"stage {stage.name} returned {result.table.num_rows} rows for {table.num_rows}")
    if result.reasons is not None and len(result.reasons) != table.num_rows:
        raise ValueError(f"stage {stage.name} returned {len(result.reasons)} reasons for {table.num_rows} rows")
    return result


def _stats_row(task: Task, task_id: str, segment: int, c: StageCounter) -> dict:
    reasons = [{"reason": r, "kind": "reject", "docs": n} for r, n in c.rejected.most_common()]
    reasons += [{"reason": r, "kind": "skip", "docs": n} for r, n in c.skipped.most_common()]
    return {
        "task_id": task_id, "segment": segment, "source": task.source, "path": printable(task.path), "stage": c.stage,
        "position": c.position, "docs_in": c.docs_in, "docs_out": c.docs_out, "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out, "rejected": sum(c.rejected.values()), "skipped": sum(c.skipped.values()),
        "seconds": round(c.seconds, 6), "reasons": reasons,
    }
