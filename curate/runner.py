"""The Ray runner: plans tasks, runs them on a pool of workers, resumes where a run stopped.

A pipeline is cut into *segments* at its global stages:

    segment 0: read -> extract -> langid -> ... -> detox      (one task per input file / byte range)
    global:    dedup.run(all segment-0 shards)                  (its own distributed steps)
    segment 1: dedup.apply -> pii                              (one task per segment-0 shard)

Per-document stages of a segment run fused on each task's record batches inside
a worker (a Ray actor that loads models once). Output layout of ``DIR``:

    docs/*.parquet       kept documents          rejects/*.parquet  dropped, with reason
    stats/*.parquet      per task and stage      manifest.json      config, versions, inputs, tasks
    work/                intermediate shards and global-stage state (removed when the run completes,
                         except the global stages' decisions)

A task is finished when its ``stats/<task>.parquet`` exists (written last, after
its shards were renamed into place): rerunning the same command skips finished
tasks and redoes the rest, so a crash or ``kill -9`` loses only work in flight.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from curate import __version__
from curate.config import PipelineConfig
from curate.execute import TaskOutcome, TaskPlan, is_done, task_id_for
from curate.output_schema import OutputSchemas, plan_output_schemas
from curate.params import ConfigError
from curate.readers import Reader, Task
from curate.shards import write_json_atomic
from curate.stage import GlobalStage

log = logging.getLogger("curate")

MANIFEST = "manifest.json"


class OutputConflict(ConfigError):
    """The output directory holds a run with a different config."""


@dataclass
class RunSummary:
    output: str
    tasks_total: int = 0
    tasks_skipped: int = 0
    tasks_run: int = 0
    docs: int = 0
    rejects: int = 0
    seconds: float = 0.0
    ray_start_seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    already_complete: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class Segment:
    index: int
    global_stage: GlobalStage | None      # the global stage this segment starts with (applied per doc)
    stages: list                          # (stage, sources, skip_sources) tuples


def build_segments(config: PipelineConfig) -> list[Segment]:
    segments = [Segment(0, None, [])]
    for i, spec in enumerate(config.stages):
        stage = spec.build(config.file, f"stages[{i}]")
        if isinstance(stage, GlobalStage):
            segments.append(Segment(len(segments), stage, []))
        else:
            segments[-1].stages.append((stage, spec.sources, spec.skip_sources))
    return segments


def plan_tasks(config: PipelineConfig) -> tuple[list[Task], dict[str, Reader], list[dict]]:
    """Split every input into tasks; returns (tasks, reader per source, input descriptions)."""
    tasks: list[Task] = []
    readers: dict[str, Reader] = {}
    described = []
    target = max(1, int(config.run.task_mb * (1 << 20)))
    for i, (spec, paths) in enumerate(zip(config.inputs, config.resolved_paths())):
        reader = spec.reader(config.file, f"inputs[{i}]")
        if spec.source in readers:
            raise ConfigError(f"source {spec.source!r} is used by two inputs", file=config.file, key=f"inputs[{i}].source")
        readers[spec.source] = reader
        missing = [p for p in paths if not os.path.exists(p)]
        if not paths or missing:
            shown = missing[0] if missing else ", ".join(spec.paths)
            raise ConfigError(f"no input matches {shown}", file=config.file, key=f"inputs[{i}].paths")
        for task in reader.tasks(paths, target):
            tasks.append(dataclasses.replace(task, index=len(tasks)))
        described.append({
            "source": spec.source, "format": spec.format,
            "files": [{"path": p, "bytes": _size(p)} for p in paths],
        })
    return tasks, readers, described


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs
                   if os.path.isfile(os.path.join(r, f)))
    return os.path.getsize(path)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"curate": __version__, "python": sys.version.split()[0]}
    for name in ("ray", "pyarrow", "duckdb", "trafilatura", "fasttext-predict", "floret", "sentencepiece", "datasketch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


class Runner:
    """Runs a validated pipeline into ``output``; see the module docstring for the layout."""

    def __init__(self, config: PipelineConfig, output: str, *, workers: int | None = None,
                 address: str | None = None, overwrite: bool = False, show_progress: bool = True):
        self.config = config
        self.output = os.path.abspath(output)
        self.workers = workers
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.overwrite = overwrite
        self.show_progress = show_progress
        self.fingerprint = config.fingerprint()
        self.manifest: dict[str, Any] = {}
        self._manifest_written = 0.0  # monotonic time of the last periodic manifest write

    # ---- output directory -------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return os.path.join(self.output, *parts)

    def _prepare_output(self) -> bool:
        """Create or reopen the output; True when the same run already completed."""
        manifest_path = self._path(MANIFEST)
        if os.path.exists(manifest_path):
            import json

            with open(manifest_path, encoding="utf-8") as f:
                previous = json.load(f)
            if previous.get("fingerprint") != self.fingerprint:
                if not self.overwrite:
                    raise OutputConflict(
                        "holds a run with a different config (inputs or stages changed); "
                        "use --overwrite to replace it, or choose another --output", file=self.output)
                self._wipe()
            elif previous.get("complete"):
                self.manifest = previous
                return True
            else:
                self.manifest = previous
        elif os.path.isdir(self.output) and os.listdir(self.output):
            if not self.overwrite:
                raise OutputConflict("exists and is not a curate output; use --overwrite or another --output",
                                     file=self.output)
            self._wipe()
        for sub in ("docs", "rejects", "stats", "work"):
            os.makedirs(self._path(sub), exist_ok=True)
        return False

    def _wipe(self) -> None:
        for name in ("docs", "rejects", "stats", "work", MANIFEST):
            target = self._path(name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)

    def _write_manifest(self, **updates: Any) -> None:
        self.manifest.update(updates)
        write_json_atomic(self._path(MANIFEST), self.manifest)

    # ---- the run ----------------------------------------------------------------------------
    def run(self) -> RunSummary:
        started = time.perf_counter()
        summary = RunSummary(self.output)
        if self._prepare_output():
            summary.already_complete = True
            summary.tasks_total = len(self.manifest.get("tasks", {}))
            summary.tasks_skipped = summary.tasks_total
            summary.docs = self.manifest.get("docs", 0)
            summary.rejects = self.manifest.get("rejects", 0)
            return summary
        tasks, readers, inputs = plan_tasks(self.config)
        segments = build_segments(self.config)
        self.schemas = self._output_schemas(readers, inputs, segments)
        self._write_manifest(
            curate_version=__version__, versions=_versions(), fingerprint=self.fingerprint,
            config=self.config.to_dict(), config_file=self.config.file, inputs=inputs, complete=False,
            segments=[{"index": s.index, "global_stage": s.global_stage.name if s.global_stage else None,
                       "stages": [st.name for st, _, _ in s.stages]} for s in segments],
            tasks=self.manifest.get("tasks", {}), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            output_schema=self.schemas.describe(),
        )
        from curate.pool import WorkerPool

        with WorkerPool(self.workers, self.address, show_progress=self.show_progress) as pool:
            summary.ray_start_seconds = pool.start_seconds
            segment_tasks = tasks
            for segment in segments:
                plan = self._plan(segment, final=segment.index == len(segments) - 1)
                if segment.global_stage is not None:
                    segment_tasks = self._run_global(segment, pool, summary)
                    if segment_tasks is None:
                        break
                todo = [t for t in segment_tasks if not is_done(plan, task_id_for(t, segment.index))]
                summary.tasks_total += len(segment_tasks)
                summary.tasks_skipped += len(segment_tasks) - len(todo)
                outcomes, failed = pool.run(plan, todo, readers if segment.index == 0 else None,
                                            label=self._label(segment), total=len(segment_tasks),
                                            on_done=self._record_task, max_retries=self.config.run.max_retries)
                summary.tasks_run += len(outcomes)
                summary.failed.update(failed)
                if failed:
                    break  # a global step needs every shard; later segments wait for a rerun
        self._finish(summary, segments)
        summary.seconds = time.perf_counter() - started
        return summary

    def _label(self, segment: Segment) -> str:
        names = ([segment.global_stage.name] if segment.global_stage else []) + [s.name for s, _, _ in segment.stages]
        return ("read, " if segment.index == 0 else "") + ", ".join(names)

    def _plan(self, segment: Segment, *, final: bool) -> TaskPlan:
        docs_dir = self._path("docs") if final else self._path("work", f"segment{segment.index}")
        workdir = self._path("work", segment.global_stage.name) if segment.global_stage else None
        return TaskPlan(
            segment=segment.index, stages=segment.stages, global_stage=segment.global_stage,
            global_workdir=workdir, docs_dir=docs_dir, rejects_dir=self._path("rejects"),
            stats_dir=self._path("stats"), batch_rows=self.config.run.batch_rows,
            shard_rows=self.config.run.shard_rows,
            docs_schema=self.schemas.docs if final else None, rejects_schema=self.schemas.rejects,
        )

    def _output_schemas(self, readers, inputs: list[dict], segments: list[Segment]) -> OutputSchemas:
        """One schema for docs/ and one for rejects/, planned now; a resumed run must plan the same."""
        paths = {entry["source"]: [f["path"] for f in entry["files"]] for entry in inputs}
        schemas = plan_output_schemas(self.config, readers, paths, segments)
        before = self.manifest.get("output_schema")
        if before is not None and before != schemas.describe():
            raise OutputConflict("holds shards of another output schema (written by another curate version?); "
                                 "use --overwrite to start again, or choose another --output", file=self.output)
        return schemas

    def _run_global(self, segment: Segment, pool, summary: RunSummary) -> list[Task] | None:
        """Run a global stage over the previous segment's shards; returns the next segment's tasks."""
        stage = segment.global_stage
        shards = sorted(glob.glob(self._path("work", f"segment{segment.index - 1}", "*.parquet")))
        workdir = self._path("work", stage.name)
        marker = os.path.join(workdir, "_SUCCESS")
        if not os.path.exists(marker):
            os.makedirs(workdir, exist_ok=True)
            pool.say(f"{stage.name}: global step over {len(shards)} shards")
            t0 = time.perf_counter()
            try:
                result = stage.run(shards, workdir, workers=pool.size) or {}
            except Exception as err:  # noqa: BLE001 - reported, run marked failed
                log.exception("global stage %s failed", stage.name)
                summary.failed[f"global:{stage.name}"] = f"{type(err).__name__}: {err}"
                return None
            seconds = time.perf_counter() - t0
            write_json_atomic(marker, {"summary": result, "seconds": seconds})
        return [Task(source=_source_of_shard(path), format="parquet", path=path, index=i)
                for i, path in enumerate(shards)]

    def _record_task(self, outcome: TaskOutcome, task: Task) -> None:
        self.manifest.setdefault("tasks", {})[outcome.task_id] = {
            "segment": outcome.segment, "source": outcome.source, "path": task.path,
            "range": [task.start, task.end], "docs": outcome.docs, "rejects": outcome.rejects,
            "seconds": round(outcome.seconds, 3),
        }
        now = time.monotonic()
        if now - self._manifest_written > 2.0:
            self._write_manifest()
            self._manifest_written = now

    def _finished_tasks(self) -> dict[str, dict]:
        """Every finished task, read back from the stats files (the ground truth of what is done)."""
        import duckdb

        pattern = self._path("stats", "*.parquet")
        if not glob.glob(pattern):
            return {}
        rows = duckdb.connect().execute("""
            SELECT task_id, any_value(segment), any_value(source), any_value(path),
                   arg_max(docs_out, position), sum(rejected), sum(seconds)
            FROM read_parquet(?) GROUP BY task_id ORDER BY task_id""", [pattern]).fetchall()
        recorded = self.manifest.get("tasks", {})
        return {
            task_id: {**recorded.get(task_id, {}), "segment": segment, "source": source, "path": path,
                      "docs": int(docs), "rejects": int(rejects), "seconds": round(seconds, 3)}
            for task_id, segment, source, path, docs, rejects, seconds in rows
        }

    def _finish(self, summary: RunSummary, segments: list[Segment]) -> None:
        self.manifest["tasks"] = self._finished_tasks()
        summary.docs = _count_rows(self._path("docs", "*.parquet"))
        summary.rejects = _count_rows(self._path("rejects", "*.parquet"))
        complete = summary.ok
        updates: dict[str, Any] = {"complete": complete, "docs": summary.docs, "rejects": summary.rejects,
                                   "failed": summary.failed}
        if complete:
            updates["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            for segment in segments[:-1]:  # intermediate shards: every document now lives in docs/ or rejects/
                shutil.rmtree(self._path("work", f"segment{segment.index}"), ignore_errors=True)
        self._write_manifest(**updates)


def _count_rows(pattern: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in glob.glob(pattern))


def _source_of_shard(path: str) -> str:
    """Shards are named after their task, whose id starts with the source name."""
    import pyarrow.parquet as pq

    shard = pq.ParquetFile(path)
    if shard.metadata.num_row_groups:
        return shard.read_row_group(0, columns=["source"])["source"][0].as_py()
    return os.path.basename(path).split("-")[0]
