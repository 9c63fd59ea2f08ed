"""How big a task is: sized from the input and the number of workers, so that every worker is busy.

A run used to cut inputs at ``run.task_mb`` (64 MB) only, and never cut a compressed file: one
80 MB JSONL file was two tasks on a machine with 16 workers, and a ``.jsonl.gz`` or a WARC file
was one task whatever its size. Now the planner knows how many workers the run has and aims at
``TASKS_PER_WORKER`` tasks each (two: a worker that finishes early takes another, so the run does
not wait on one slow task); ``run.task_mb`` stays the upper bound, and ``FLOOR_BYTES`` the lower
one, so that a small input does not explode into many tiny tasks.

Two kinds of cut:

* **byte ranges** of a plain file (JSONL): free, a task seeks to its start. Ranges are about
  ``target_bytes``.
* **parts** of a file that cannot be entered in the middle (gzip, WARC): each of its tasks reads
  the file from the start, and keeps the records whose compressed position lies in its own range
  of the file's bytes (``Task.start``/``Task.end`` are compressed offsets). Decompressing gzip runs
  at hundreds of MB/s while the pipeline processes ~1 MB/s per worker, so reading a file more than
  once costs little; still it is only done to keep workers busy: a file gets
  ``size / fanout_bytes`` parts, where ``fanout_bytes`` is the input's share per task (not capped
  by ``task_mb``: many large compressed files need no cutting), at most ``MAX_PARTS``.

A cluster run (``--address``) is sized the same way from the cluster's CPUs: the planner asks Ray
(``ray.cluster_resources()``, ``cluster_workers``) before the run starts, as many workers as the pool
will have (fewer when ``--workers`` asks for fewer). It asks only when the run is sized afresh: a
resume takes the recorded plan and need not connect. An autoscaling cluster is sized by the CPUs it
has when the run starts.

A resumed run must cut its inputs exactly as the run it continues did (a task that finished is
only known by its id): the sizing is recorded in the manifest (``plan``) and reused, whatever
``--workers`` or ``run.task_mb`` say now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

#: Tasks per worker the planner aims at.
TASKS_PER_WORKER = 2
#: No task is cut smaller than this (unless ``run.task_mb`` is smaller still).
FLOOR_BYTES = 4 << 20
#: A compressed file is read by at most this many tasks.
MAX_PARTS = 16
#: Bytes of text per byte of gzip, to weigh a compressed file against plain ones (JSONL of web and
#: book text: 2.6-3.2 measured on the shared data; an estimate only moves the balance, never the output).
GZIP_EXPANSION = 3.0
#: A byte range may be this much larger than its target (so ``run.task_mb`` is exceeded by 25% at most).
RANGE_SLACK = 1.25
#: The scheme of task ids and cuts; a manifest without it was cut by an older curate.
SCHEME = 2


@dataclass(frozen=True)
class TaskSizing:
    """What the plan is sized from: ``run.task_mb`` and the workers (None: unknown, as in a run planned
    by curate before the workers were known; such a run is cut at ``task_mb`` alone)."""

    task_bytes: int
    workers: int | None = None
    #: Set when resuming a run an older curate started (its version): its cut files had other task ids.
    older_run: str | None = None
    output: str | None = None  # the output folder of that run, for the error

    def describe(self) -> dict:
        return {"scheme": SCHEME, "task_bytes": self.task_bytes, "workers": self.workers}

    @classmethod
    def from_manifest(cls, plan: dict) -> "TaskSizing":
        return cls(int(plan["task_bytes"]), plan.get("workers"))

    def targets(self, total_bytes: int) -> tuple[int, int | None]:
        """(bytes per byte-range task, bytes per part of a compressed file or None: no parts)."""
        if not self.workers:
            return self.task_bytes, None
        share = total_bytes / (self.workers * TASKS_PER_WORKER)
        floor = min(FLOOR_BYTES, self.task_bytes)
        target = int(min(self.task_bytes, max(floor, share)))
        return max(1, target), max(1, int(max(floor, share)))


def estimated_bytes(path: str, size: int) -> int:
    """The bytes a file will give its reader: compressed files count ``GZIP_EXPANSION`` times."""
    return int(size * GZIP_EXPANSION) if path.lower().endswith(".gz") else size


def part_ranges(size: int, estimated: int, fanout_bytes: int | None) -> list[tuple[int, int | None]]:
    """The compressed byte ranges ``[start, end)`` of a file read in parts; one ``(0, None)``: whole."""
    if not fanout_bytes or size <= 0:
        return [(0, None)]
    parts = min(MAX_PARTS, max(1, round(estimated / fanout_bytes)), size)
    if parts == 1:
        return [(0, None)]
    bounds = [size * k // parts for k in range(parts + 1)]
    return [(bounds[k], None if k == parts - 1 else bounds[k + 1]) for k in range(parts)]


def byte_ranges(size: int, target_bytes: int, *, legacy: bool) -> list[tuple[int, int | None]]:
    """Byte ranges of a plain file, of equal size, at most ``RANGE_SLACK`` x ``target_bytes``.

    The slack keeps a file a little over its share one task (four files of an 80 MB input on 2
    workers, each a few bytes over 20 MB) instead of cutting each into two halves.
    ``legacy``: the cut of a run without a known worker count (and of curate before scheme 2):
    a file up to 1.5x the target is one task, larger ones are cut every ``target_bytes``.
    """
    if legacy:
        if size <= target_bytes * 1.5:
            return [(0, None)]
        starts = list(range(0, size, target_bytes))
        return [(s, None if s + target_bytes >= size else s + target_bytes) for s in starts]
    n = max(1, math.ceil(size / (target_bytes * RANGE_SLACK)))
    if n == 1:
        return [(0, None)]
    bounds = [size * k // n for k in range(n + 1)]
    return [(bounds[k], None if k == n - 1 else bounds[k + 1]) for k in range(n)]


def owns(position: int, start: int, end: int | None) -> bool:
    """A record at compressed ``position`` belongs to the part ``[start, end)``."""
    return position >= start and (end is None or position < end)


def cluster_workers(address: str, requested: int | None) -> int:
    """The workers a run on the Ray cluster at ``address`` will have: the cluster's CPUs, or fewer when
    ``--workers`` asks for fewer (as ``curate.pool.WorkerPool`` sizes itself).

    The plan is made before the pool starts (a run that cannot be planned leaves no trace and starts
    no Ray), so this connects for the question and disconnects; the pool connects again. A process
    already connected to Ray (a notebook, a test) is asked and left connected.
    """
    import ray

    from curate.pool import start_ray

    connected = start_ray(None, address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
    finally:
        if connected:
            ray.shutdown()
    return max(1, min(requested or cpus, cpus))


def sizing_for_run(manifest_path: str, fingerprint: str, task_mb: float,
                   workers: int | None | Callable[[], int | None]) -> TaskSizing:
    """The sizing of a run into the output whose manifest is ``manifest_path``.

    A fresh run (or one that will replace another config's output) is sized from ``task_mb`` and
    ``workers``; a run that continues an unfinished one with the same config reuses that run's
    recorded sizing, else its tasks would be cut differently and overlap the finished ones.
    ``workers`` may be a function (asking a cluster costs a connection): it is called only for a
    fresh sizing.
    """
    from curate import storage

    def fresh() -> TaskSizing:
        return TaskSizing(max(1, int(task_mb * (1 << 20))), workers() if callable(workers) else workers)

    try:
        previous = storage.read_json(manifest_path) if storage.exists(manifest_path) else None
    except (OSError, ValueError):
        previous = None  # the runner reports an unreadable manifest
    if not isinstance(previous, dict):
        return fresh()
    if previous.get("fingerprint") != fingerprint or previous.get("complete"):
        return fresh()
    plan = previous.get("plan")
    if isinstance(plan, dict) and plan.get("scheme") == SCHEME:
        return TaskSizing.from_manifest(plan)
    old_mb = (previous.get("config") or {}).get("run", {}).get("task_mb", task_mb)
    return TaskSizing(max(1, int(old_mb * (1 << 20))), None,
                      older_run=str(previous.get("curate_version") or "(older)"),
                      output=storage.dirname(manifest_path))
