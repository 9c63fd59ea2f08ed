"""Runner scaling: a CPU-bound stage through the Ray runner vs a plain single-process pyarrow loop.

    python -m curate.benchmarks.runner_scaling [--docs 200000] [--workers 2] [--ms-per-doc 1.0]

Both read the same Parquet file batch by batch, apply the same stage (about
``--ms-per-doc`` of pure-Python work per document) and write Parquet. Printed:
the speed-up (goal >= 1.8x at 2 workers), the per-task overhead of the runner
and Ray's start-up, measured separately. Figures depend on the machine: run it
on a quiet one and compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from curate.stage import Stage, StageResult


@dataclass
class BusyParams:
    iterations: int = 1000
    """Loop iterations per document; ``main`` calibrates them once to about --ms-per-doc."""


def busy_work(text: str, iterations: int) -> int:
    value = 0
    for i in range(iterations):
        value = (value * 31 + ord(text[i % len(text)])) % 1_000_003
    return value


# iterations of busy_work's loop per millisecond on this machine, calibrated once per process
_CALIBRATION: dict[str, int] = {}


def iterations_per_ms() -> int:
    if "n" not in _CALIBRATION:
        started, n = time.perf_counter(), 200_000
        busy_work("calibration text", n)
        _CALIBRATION["n"] = int(n / ((time.perf_counter() - started) * 1000))
    return _CALIBRATION["n"]


class BusyStage(Stage):
    """About ``ms_per_doc`` of pure-Python work per document (a stand-in for a real filter)."""

    name = "busy"
    Params = BusyParams
    outputs = (pa.field("busy_value", pa.int64()),)

    def process(self, table: pa.Table) -> StageResult:
        values = [busy_work(t, self.params.iterations) for t in table["text"].to_pylist()]
        return StageResult(table.append_column("busy_value", pa.array(values, pa.int64())))


def make_input(path: str, docs: int, rows_per_group: int) -> None:
    texts = [f"document {i} " + "lorem ipsum dolor sit amet " * (1 + i % 20) for i in range(docs)]
    table = pa.table({"id": [f"d{i}" for i in range(docs)], "text": texts})
    pq.write_table(table, path, row_group_size=rows_per_group)


def plain_loop(src: str, dst: str, stage: BusyStage) -> float:
    started = time.perf_counter()
    stage.ensure_setup()
    writer = None
    for batch in pq.ParquetFile(src).iter_batches(batch_size=1000):
        result = stage.process(pa.Table.from_batches([batch]))
        if writer is None:
            writer = pq.ParquetWriter(dst, result.table.schema, compression="zstd")
        writer.write_table(result.table)
    writer.close()
    return time.perf_counter() - started


def _mp_part(args: tuple[str, str, list[int], int]) -> None:
    src, dst, groups, iterations = args
    stage = BusyStage(BusyParams(iterations))
    writer = None
    for batch in pq.ParquetFile(src).iter_batches(batch_size=1000, row_groups=groups):
        result = stage.process(pa.Table.from_batches([batch]))
        writer = writer or pq.ParquetWriter(dst, result.table.schema, compression="zstd")
        writer.write_table(result.table)
    writer.close()


def multiprocessing_pool(src: str, tmp: str, workers: int, iterations: int) -> float:
    """The reference ceiling: plain multiprocessing over row groups, no framework."""
    import multiprocessing

    groups = list(range(pq.ParquetFile(src).metadata.num_row_groups))
    jobs = [(src, os.path.join(tmp, f"mp{g}.parquet"), [g], iterations) for g in groups]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_mp_part, jobs, chunksize=1)
    return time.perf_counter() - started


def through_runner(src: str, out: str, workers: int, iterations: int, task_mb: float) -> tuple[float, float, int]:
    import ray

    from curate.config import from_dict
    from curate.runner import Runner

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    start_seconds = time.perf_counter() - t0
    config = from_dict({
        "inputs": [{"source": "bench", "format": "parquet", "paths": [src]}],
        "stages": [{"curate.benchmarks.runner_scaling:BusyStage": {"iterations": iterations}}],
        "run": {"task_mb": task_mb},
    })
    started = time.perf_counter()
    summary = Runner(config, out, workers=workers, show_progress=False).run()
    seconds = time.perf_counter() - started
    ray.shutdown()
    assert summary.ok, summary.failed
    return seconds, start_seconds, summary.tasks_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ms-per-doc", type=float, default=1.0)
    parser.add_argument("--rows-per-task", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "input.parquet")
        make_input(src, args.docs, args.rows_per_task)
        task_mb = pq.ParquetFile(src).metadata.row_group(0).total_byte_size / (1 << 20)  # a row group a task
        iterations = int(args.ms_per_doc * iterations_per_ms())
        plain = plain_loop(src, os.path.join(tmp, "plain.parquet"), BusyStage(BusyParams(iterations)))
        ray_seconds, start_seconds, tasks = through_runner(src, os.path.join(tmp, "out"), args.workers,
                                                           iterations, task_mb)
        pooled = multiprocessing_pool(src, tmp, args.workers, iterations)
        # per-task overhead: the same no-op work cut into few large tasks vs many small ones
        few = os.path.join(tmp, "few.parquet")
        many = os.path.join(tmp, "many.parquet")
        make_input(few, 20_000, 10_000)
        make_input(many, 20_000, 100)
        few_seconds, _, few_tasks = through_runner(few, os.path.join(tmp, "out-few"), args.workers, 0, 1e-6)
        many_seconds, _, many_tasks = through_runner(many, os.path.join(tmp, "out-many"), args.workers, 0, 1e-6)
    overhead_ms = max(0.0, many_seconds - few_seconds) * args.workers / max(many_tasks - few_tasks, 1) * 1000
    print(f"documents: {args.docs:,}  tasks: {tasks}  workers: {args.workers}  work: {args.ms_per_doc} ms/doc")
    print(f"plain single-process loop:  {plain:8.1f} s  ({args.docs / plain:,.0f} docs/s)")
    print(f"curate runner on Ray:       {ray_seconds:8.1f} s  ({args.docs / ray_seconds:,.0f} docs/s), "
          f"Ray start-up {start_seconds:.1f} s not included")
    print(f"multiprocessing.Pool:       {pooled:8.1f} s  (reference ceiling, no framework)")
    print(f"speed-up: {plain / ray_seconds:.2f}x  (goal >= 1.8x at 2 workers; multiprocessing {plain / pooled:.2f}x)")
    print(f"per-task overhead: {overhead_ms:.1f} ms  (no-op stage over 20,000 docs: {few_tasks} tasks {few_seconds:.2f} s, "
          f"{many_tasks} tasks {many_seconds:.2f} s; goal < 50 ms)")


if __name__ == "__main__":
    main()
