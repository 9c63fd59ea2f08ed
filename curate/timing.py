"""Where a run's time went: one row per step of the run, beside the per-task stats, and its table.

The per-task stats (``stats/<task>.parquet``) hold the seconds each stage spent inside tasks. They miss
what happens between tasks: planning, starting and stopping Ray, the global stage's own distributed
steps (dedup's map, url, exact, bands, verify, cc, final), the id uniqueness pass, reading the stats
back and writing the manifest. A dedup that took 11 s showed as ``dedup 0.31 s`` (its apply pass). So
each ``curate run`` invocation writes ``stats/timing/<run>.parquet``: its steps in order, wall-clock
seconds each, with the executor it used. A resumed run adds its own file; the table sums them.

    curate sql OUT "SELECT step, sum(seconds) FROM timing GROUP BY step ORDER BY 2 DESC"

Columns (``TIMING_SCHEMA``): ``run`` (the invocation: start time and pid), ``executor`` (``ray`` or
``in-process``), ``position`` (order within the run), ``segment`` (null for run-wide steps), ``stage``
(the global stage a step belongs to, or the segment's stages), ``step``, ``tasks`` (tasks the step ran,
null where it has none) and ``seconds``.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

import pyarrow as pa

TIMING_DIR = "timing"  # under stats/: not matched by stats/*.parquet, so the per-task view is unchanged

TIMING_SCHEMA = pa.schema([
    ("run", pa.string()),
    ("executor", pa.string()),
    ("position", pa.int32()),
    ("segment", pa.int32()),
    ("stage", pa.string()),
    ("step", pa.string()),
    ("tasks", pa.int64()),
    ("seconds", pa.float64()),
])


class RunTimer:
    """Collects the steps of one ``curate run`` invocation, in the order they happen."""

    def __init__(self) -> None:
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self.executor = ""
        self.rows: list[dict] = []

    def add(self, step: str, seconds: float, *, stage: str | None = None, segment: int | None = None,
            tasks: int | None = None) -> None:
        self.rows.append({"step": step, "seconds": round(float(seconds), 6), "stage": stage, "segment": segment,
                          "tasks": tasks})

    @contextmanager
    def step(self, step: str, **where) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(step, time.perf_counter() - started, **where)

    def add_global(self, stage: str, segment: int, seconds: float, summary: dict) -> None:
        """A global stage's step: its own per-step seconds when its summary has them (``seconds``:
        {step: s}), and what the stage spent outside them (planning, reading shard sizes ...)."""
        steps = summary.get("seconds") if isinstance(summary, dict) else None
        if isinstance(steps, dict) and steps:
            named = 0.0
            for name, value in steps.items():
                if isinstance(value, (int, float)):
                    self.add(str(name), value, stage=stage, segment=segment)
                    named += float(value)
            if seconds - named > 0.0005:
                self.add("other", seconds - named, stage=stage, segment=segment)
        else:
            self.add("global step", seconds, stage=stage, segment=segment)

    def table(self) -> pa.Table:
        from curate.arrays import table_from_rows  # not from_pylist: no pandas import in the driver

        rows = [{"run": self.run, "executor": self.executor, "position": i, **row} for i, row in enumerate(self.rows)]
        return table_from_rows(rows, TIMING_SCHEMA)

    def write(self, stats_dir: str) -> str:
        """``stats_dir/timing/<run>.parquet``, whole or absent (``curate.storage``)."""
        from curate import storage

        folder = storage.join(stats_dir, TIMING_DIR)
        storage.makedirs(folder)
        path = storage.join(folder, f"{self.run}.parquet")
        storage.write_table(path, self.table())
        return path


def timing_rows(con) -> list[tuple[str, int | None, float]]:
    """(what, tasks, seconds) summed over the output's runs, in the order the steps ran."""
    rows = con.execute("""
        SELECT segment, stage, step, sum(tasks) AS tasks, sum(seconds) AS seconds
        FROM timing
        GROUP BY segment, stage, step
        ORDER BY min(position), segment NULLS FIRST, stage, step
    """).fetchall()
    return [(_label(segment, stage, step), None if tasks is None else int(tasks), float(seconds))
            for segment, stage, step, tasks, seconds in rows]


def _label(segment: int | None, stage: str | None, step: str) -> str:
    if step == "tasks" and segment is not None:
        return f"segment {segment} tasks ({stage})"
    return f"{stage}: {step}" if stage else step


def print_timing(con, console) -> None:
    """The table of where the time went (after the funnel); nothing for an output written before it existed."""
    from rich.table import Table

    rows = timing_rows(con)
    if not rows:
        return
    runs, executors = con.execute("SELECT count(DISTINCT run), string_agg(DISTINCT executor, ', ') FROM timing").fetchone()
    total = sum(seconds for _, _, seconds in rows)
    table = Table(title=f"where the time went: {total:.1f} s in {runs} run{'s' if runs != 1 else ''} "
                        f"({executors}; stats/timing)", title_justify="left")
    for name, justify in (("step", "left"), ("tasks", "right"), ("s", "right"), ("share", "right")):
        table.add_column(name, justify=justify)
    for what, tasks, seconds in rows:
        table.add_row(what, "" if tasks is None else f"{tasks:,}", f"{seconds:.2f}",
                      f"{seconds / total:.0%}" if total > 0 else "")
    console.print(table)
