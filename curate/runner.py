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

``DIR`` may be an object-store prefix (``s3://bucket/run/``, ``gs://``; ``curate.storage``): the same
rule holds there, with whole-object uploads in place of renames, and the lock is an object created with a
conditional PUT (``RemoteOutputLock``).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from curate import __version__, storage
from curate.config import PipelineConfig
from curate.execute import TaskOutcome, TaskPlan, done_task_ids, task_id_for
from curate.output_schema import OutputSchemas, plan_output_schemas
from curate.params import ConfigError
from curate.readers import Reader, Task
from curate.readers.sizing import TaskSizing, cluster_workers, estimated_bytes, sizing_for_run
from curate.remote import describe as describe_remote, is_remote
from curate.shards import write_json_atomic
from curate.stage import GlobalStage

log = logging.getLogger("curate")

MANIFEST = "manifest.json"


class OutputConflict(ConfigError):
    """The output directory holds a run with a different config."""


class OutputUnusable(ConfigError):
    """The output path cannot hold a run: a file is in the way, or it cannot be written."""


class InputChanged(ConfigError):
    """An input file changed after the output was (partly) written from it."""


class OutputLocked(RuntimeError):
    """Another run is working in the same output directory."""


LOCK = ".curate.lock"


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
    ray_stop_seconds: float = 0.0
    executor: str = ""          # "ray" or "in-process" (curate.pool.open_pool), and why
    executor_why: str = ""
    failed: dict[str, str] = field(default_factory=dict)
    already_complete: bool = False
    ids_renamed: int = 0        # documents whose given id was used by another one: renamed, given_id kept
    lock_taken_over: str = ""   # the stale lock of a run that stopped without releasing it, if any
    inputs_touched: list[str] = field(default_factory=list)  # new modification time, same size and content

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


def plan_tasks(config: PipelineConfig,
               sizing: TaskSizing | None = None) -> tuple[list[Task], dict[str, Reader], list[dict]]:
    """Split every input into tasks; returns (tasks, reader per source, input descriptions).

    ``sizing``: the worker count and ``task_mb`` the tasks are sized from (curate.readers.sizing:
    every worker busy whatever the file layout); None: ``run.task_mb`` alone.
    """
    sizing = sizing or TaskSizing(max(1, int(config.run.task_mb * (1 << 20))))
    tasks: list[Task] = []
    readers: dict[str, Reader] = {}
    described = []
    planned: list[tuple[Reader, list[str]]] = []
    for i, (spec, paths) in enumerate(zip(config.inputs, config.resolved_paths())):
        reader = spec.reader(config.file, f"inputs[{i}]")
        if spec.source in readers:
            raise ConfigError(f"source {spec.source!r} is used by two inputs", file=config.file, key=f"inputs[{i}].source")
        readers[spec.source] = reader
        missing = [p for p in paths if not is_remote(p) and not os.path.exists(p)]
        if not paths or missing:
            shown = missing[0] if missing else ", ".join(spec.paths)
            raise ConfigError(f"no input matches {shown}", file=config.file, key=f"inputs[{i}].paths")
        try:  # also: a URL that is not there is an error now, before anything is written
            remote = describe_remote([p for p in paths if is_remote(p)])
        except ConfigError as err:
            raise ConfigError(err.message, file=config.file, key=f"inputs[{i}].paths") from None
        planned.append((reader, paths))
        described.append({
            "source": spec.source, "format": spec.format,
            "files": [{"path": p, **(remote[p] if p in remote else describe_file(p))} for p in paths],
        })
    target, fanout = sizing.targets(sum(estimated_bytes(f["path"], f["bytes"])
                                        for d in described for f in d["files"]))
    for reader, paths in planned:
        for task in reader.tasks(paths, target, fanout):
            tasks.append(dataclasses.replace(task, index=len(tasks)))
    if sizing.older_run and any(t.start or t.end is not None for t in tasks):
        raise ConfigError(f"holds an unfinished run started by curate {sizing.older_run}, which named the parts of "
                          "cut files differently; finish it with that version, or use --overwrite to start again",
                          file=sizing.output)
    return tasks, readers, described


#: The content check reads this many bytes at each of ``SAMPLE_SPOTS`` places: the start, the end and
#: evenly in between (36 KiB of a large file; a file under 36 KiB is read whole).
SAMPLE_BYTES = 4096
SAMPLE_SPOTS = 9
SAMPLE_SCHEME = "v2"


def largest_first(tasks: list[Task], inputs: list[dict]) -> list[Task]:
    """The order tasks are handed out: the largest first (by the bytes they give their reader; tasks of
    unknown size keep their place after them). Handed out in input order, a run often ends with one
    worker on the last big file while the others have nothing left (1-2 s of a 30 s WARC run on two
    workers); biggest first leaves the small tasks to fill that end. Output and ids do not depend on it."""
    sizes = {f["path"]: f.get("bytes", 0) for spec in inputs for f in spec["files"]}

    def weight(task: Task) -> int:
        size = sizes.get(task.path, 0)
        part = (task.end if task.end is not None else size) - task.start  # a cut: its share of the file
        return estimated_bytes(task.path, max(part, 0))

    return sorted(tasks, key=weight, reverse=True)


def describe_file(path: str) -> dict:
    """Size, modification time and a cheap content check of an input, to notice it changing under a run.

    The check hashes the size and 4 KiB at nine evenly spaced places (the first and the last 4 KiB among
    them): appending, truncating or editing near either end always shows, an edit in the middle of a
    large file may not. Reading whole inputs again on every rerun would cost as much as the run. A folder
    input (a code tree) is described by its files: relative paths, sizes and first 4 KiB, and the latest
    modification time.
    """
    digest = hashlib.blake2b(digest_size=8)
    try:
        if os.path.isdir(path):
            size, mtime = 0, os.stat(path).st_mtime_ns
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    try:
                        info = os.stat(full)
                    except OSError:
                        continue
                    size += info.st_size
                    mtime = max(mtime, info.st_mtime_ns)
                    digest.update(f"{os.path.relpath(full, path)}\0{info.st_size}\n".encode("utf-8", "surrogateescape"))
                    try:
                        with open(full, "rb") as f:
                            digest.update(f.read(SAMPLE_BYTES))
                    except OSError:
                        continue
            return {"bytes": size, "mtime_ns": mtime, "sample": f"{SAMPLE_SCHEME}:{digest.hexdigest()}"}
        info = os.stat(path)
        digest.update(str(info.st_size).encode())
        with open(path, "rb") as f:
            last = max(info.st_size - SAMPLE_BYTES, 0)
            for spot in sorted({last * i // (SAMPLE_SPOTS - 1) for i in range(SAMPLE_SPOTS)}):
                f.seek(spot)
                digest.update(f.read(SAMPLE_BYTES))
        return {"bytes": info.st_size, "mtime_ns": info.st_mtime_ns,
                "sample": f"{SAMPLE_SCHEME}:{digest.hexdigest()}"}
    except OSError:  # unreadable: its task reports the error; nothing to compare
        return {"bytes": 0}


def changed_inputs(previous: list[dict], current: list[dict]) -> tuple[list[str], list[str]]:
    """Inputs of the run in ``previous`` (manifest ``inputs``) that differ now: (changed, touched).

    Changed: another size, or another content check. Touched: only the modification time differs (a
    file copied again, regenerated with the same bytes, ``touch``ed): taken as unchanged, and said.
    """
    before = {f["path"]: f for spec in previous for f in spec.get("files", [])}
    changed, touched = [], []
    for spec in current:
        for now in spec["files"]:
            old = before.get(now["path"])
            if old is None:
                continue  # a new file changes the config fingerprint: reported as a config change
            old_sample, new_sample = old.get("sample"), now.get("sample")
            comparable = bool(old_sample and new_sample) and old_sample.split(":")[0] == new_sample.split(":")[0]
            if old.get("bytes") != now.get("bytes"):
                changed.append(f"{now['path']} (size {old.get('bytes')} -> {now.get('bytes')} bytes)")
            elif comparable and old_sample != new_sample:
                changed.append(f"{now['path']} (content changed, same size)")
            elif old.get("remote") and now.get("remote") and old["remote"] != now["remote"]:
                changed.append(f"{now['path']} (another version: {old['remote']} -> {now['remote']})")
            elif "mtime_ns" in old and old["mtime_ns"] != now.get("mtime_ns"):
                touched.append(now["path"])
    return changed, touched


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"curate": __version__, "python": sys.version.split()[0]}
    for name in ("ray", "pyarrow", "duckdb", "trafilatura", "fasttext-predict", "floret", "sentencepiece", "datasketch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _config_change(previous: dict, config: PipelineConfig, inputs: list[dict]) -> str:
    """What differs from the run recorded in ``previous``, in words, as far as it can tell."""
    before = {f["path"] for spec in previous.get("inputs", []) for f in spec.get("files", [])}
    now = {f["path"] for spec in inputs for f in spec["files"]}
    said = []
    if now - before:
        said.append("new input " + ", ".join(sorted(now - before)[:3]) + (" ..." if len(now - before) > 3 else ""))
    if before - now:
        said.append("input gone " + ", ".join(sorted(before - now)[:3]) + (" ..." if len(before - now) > 3 else ""))
    old_config = dict(previous.get("config") or {})
    new_config = config.to_dict()
    if old_config.get("stages") != new_config["stages"]:
        said.append("stages or their parameters changed")
    if [(i.get("source"), i.get("format"), i.get("options")) for i in old_config.get("inputs", [])] != \
            [(i["source"], i["format"], i["options"]) for i in new_config["inputs"]]:
        said.append("input sources, formats or options changed")
    return "; ".join(said) or "inputs or stages changed"


class OutputLock:
    """One run at a time per output folder: an exclusive ``flock`` on ``OUT/.curate.lock``.

    The kernel releases a ``flock`` when its process dies, however it dies, so the lock of a killed run
    is never in the way: the next run takes it over (the file still names the run that held it, which
    ``previous`` reports). Ray's processes do not inherit the lock (Python opens files non-inheritable).
    On NFS, Linux maps ``flock`` to a lock on the server.
    """

    def __init__(self, output: str):
        self.output = output
        self.path = os.path.join(output, LOCK)
        self.file = None
        self.previous = ""

    def acquire(self) -> None:
        import fcntl
        import socket

        try:
            self.file = open(self.path, "a+", encoding="utf-8")
        except OSError as err:
            raise OutputUnusable(f"cannot write here: {err.strerror}", file=self.output) from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "pid unknown"
            self.file.close()
            self.file = None
            raise OutputLocked(f"{self.output}: another curate run ({holder}) holds this output folder; "
                               "wait for it to finish, or choose another --output") from None
        self.file.seek(0)
        self.previous = self.file.read().strip()
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
        self.file.flush()

    def release(self) -> None:
        if self.file is not None:
            self.file.seek(0)
            self.file.truncate()  # empty: the next run knows this one ended properly
            self.file.close()     # closing releases the lock
            self.file = None


#: A remote lock not renewed for this long belongs to a run that stopped (``CURATE_LOCK_STALE_S``).
LOCK_STALE_S = 600.0
#: How often a running driver renews its remote lock.
LOCK_RENEW_S = 60.0


class RemoteOutputLock:
    """One run at a time per object-store output: the object ``OUT/.curate.lock``, created with a
    conditional PUT (``If-None-Match: *``; ``storage.put_if_absent``), so two drivers cannot both create it.

    An object store has no ``flock`` that dies with its process, so the lock says who holds it (host, pid,
    start) and when it was last renewed: the driver renews it every ``LOCK_RENEW_S`` seconds and deletes it
    at the end. A lock is *stale*, and taken over (and said, like a local one), when its driver is a dead
    process on this host, or when it was not renewed for ``CURATE_LOCK_STALE_S`` seconds (600: a driver
    killed on another machine). ``--break-lock`` takes over any lock; only for when no run is working there.
    Taking over (delete, then create again with the conditional PUT) cannot give two runs the lock unless
    two of them take over the same stale lock in the same instant: the second create fails for one.
    """

    def __init__(self, output: str, *, break_lock: bool = False):
        self.output = output
        self.path = storage.join(output, LOCK)
        self.break_lock = break_lock
        self.previous = ""
        self.held = False
        self._since = ""
        self._token = os.urandom(8).hex()  # tells this lock's own object from any other's
        self._stop = None
        self._thread = None

    def _body(self) -> bytes:
        import socket

        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": self._since,
                           "renewed": time.time(), "token": self._token}).encode("utf-8")

    @staticmethod
    def _describe(holder: dict) -> str:
        age = time.time() - float(holder.get("renewed", 0) or 0)
        return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('since', '?')}, " \
               f"last renewed {age:.0f} s ago"

    def _stale(self, holder: dict) -> bool:
        import socket

        limit = float(os.environ.get("CURATE_LOCK_STALE_S", LOCK_STALE_S))
        if time.time() - float(holder.get("renewed", 0) or 0) > limit:
            return True
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            try:
                os.kill(holder["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def _mine(self, holder: dict) -> bool:
        return holder.get("token") == self._token

    def acquire(self) -> None:
        import threading

        self._since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if not storage.put_if_absent(self.path, self._body()):
            try:
                holder = json.loads(storage.read_bytes(self.path).decode("utf-8"))
            except FileNotFoundError:
                holder = {}  # released in between: try once more below
            except ValueError:
                holder = {"pid": "unknown"}
            if self._mine(holder):  # our own create, retried after an error that hid its success
                holder = {}
                self.held = True
            if holder and not (self.break_lock or self._stale(holder)):
                raise OutputLocked(f"{self.output}: another curate run ({self._describe(holder)}) holds this output; "
                                   "wait for it to finish, or choose another --output (if no run is working "
                                   "there, --break-lock takes the lock over)") from None
            if holder:
                storage.remove(self.path)
                self.previous = self._describe(holder)
            if not self.held and not storage.put_if_absent(self.path, self._body()):
                raise OutputLocked(f"{self.output}: another curate run took this output's lock at the same "
                                   "moment; wait for it to finish, or choose another --output")
        self.held = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="curate-lock", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(float(os.environ.get("CURATE_LOCK_RENEW_S", LOCK_RENEW_S))):
            try:
                storage.write_bytes(self.path, self._body())
            except Exception:  # noqa: BLE001 - a missed renewal is retried at the next one
                log.warning("could not renew the lock %s", self.path, exc_info=True)

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            self._stop = None
        if self.held:
            storage.remove(self.path)  # gone: the next run knows this one ended properly
            self.held = False


def output_lock(output: str, *, break_lock: bool = False):
    """The lock of an output folder: ``flock`` on a local one, a conditional-PUT object in a store."""
    if storage.is_remote(output):
        return RemoteOutputLock(output, break_lock=break_lock)
    return OutputLock(output)


class Runner:
    """Runs a validated pipeline into ``output``; see the module docstring for the layout."""

    def __init__(self, config: PipelineConfig, output: str, *, workers: int | None = None,
                 address: str | None = None, overwrite: bool = False, show_progress: bool = True,
                 break_lock: bool = False):
        self.config = config
        self.output = storage.normalize(output)  # a local folder made absolute, or an object-store prefix
        self.break_lock = break_lock
        self.workers = workers
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.overwrite = overwrite
        self.show_progress = show_progress
        self.fingerprint = config.fingerprint()
        self.manifest: dict[str, Any] = {}
        self.touched: list[str] = []  # inputs with a new modification time, same size and content check
        self._manifest_written = 0.0  # monotonic time of the last periodic manifest write

    # ---- output directory -------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return storage.join(self.output, *parts)

    def _check_output(self) -> None:
        """Before anything is created: the output path is a folder this run may use, or can become one."""
        path = self.output
        if storage.is_remote(path):
            storage.check_location(path)  # credentials, bucket: one line, nothing written
            entries = set(storage.listdir(path)) - {LOCK}
            if entries and MANIFEST not in entries and not self.overwrite:
                raise OutputConflict("holds objects and is not a curate output; use --overwrite or another "
                                     "--output", file=path)
            return
        if os.path.exists(path) and not os.path.isdir(path):
            raise OutputUnusable("is a file, not a folder; choose another --output", file=path)
        parent = path
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise OutputUnusable(f"cannot create it: {parent} is a file, not a folder", file=path)
        if os.path.isdir(path):
            try:
                entries = set(os.listdir(path)) - {LOCK}
            except OSError as err:
                raise OutputUnusable(f"cannot read it: {err.strerror}", file=path) from None
            if entries and MANIFEST not in entries and not self.overwrite:
                raise OutputConflict("exists and is not a curate output; use --overwrite or another --output",
                                     file=path)

    def _create_output(self) -> None:
        if storage.is_remote(self.output):
            return  # prefixes exist as soon as an object is under them
        try:
            os.makedirs(self.output, exist_ok=True)
        except OSError as err:
            raise OutputUnusable(f"cannot create it: {err.strerror}", file=self.output) from None

    def _prepare_output(self, inputs: list[dict]) -> bool:
        """Reopen (or start) the output, under the lock; True when the same run already completed.

        A rerun refuses an output whose inputs changed since it was written (size, modification time
        or the content check of ``describe_file``). Redoing only the tasks of a changed file would be
        wrong: a file that grew shifts the byte ranges of every task after the change, and a global
        stage (dedup) decided over the old contents of every file; so the run is redone whole, and
        only when asked (``--overwrite``).
        """
        manifest_path = self._path(MANIFEST)
        if storage.exists(manifest_path):
            try:
                previous = storage.read_json(manifest_path)
            except (OSError, ValueError) as err:
                raise OutputUnusable(f"cannot read {MANIFEST}: {err}", file=self.output) from None
            changed, self.touched = changed_inputs(previous.get("inputs", []), inputs)
            if previous.get("fingerprint") != self.fingerprint:
                if not self.overwrite:
                    raise OutputConflict(
                        f"holds a run with a different config ({_config_change(previous, self.config, inputs)}); "
                        "use --overwrite to replace it, or choose another --output", file=self.output)
                self._wipe()
            elif changed:
                if not self.overwrite:
                    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
                    raise InputChanged(
                        f"input {changed[0]}{more} changed since this output was written from it; "
                        "rerun with --overwrite to redo the run on the inputs as they are now, "
                        "or choose another --output", file=self.output)
                self._wipe()
            elif previous.get("complete"):
                self.manifest = previous
                return True
            else:
                self.manifest = previous
        elif set(storage.listdir(self.output)) - {LOCK}:
            self._wipe()  # not a curate output, and --overwrite (checked in _check_output)
        for sub in ("docs", "rejects", "stats", "work"):
            storage.makedirs(self._path(sub))
        return False

    def _wipe(self) -> None:
        if storage.is_remote(self.output):
            for name in storage.listdir(self.output):
                if name != LOCK:
                    storage.rmtree(self._path(name))
            return
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
        """Plan, then run under the output folder's lock. Nothing is created before the plan holds:
        a run that cannot start (no input, a bad path) leaves no trace."""
        from curate.timing import RunTimer

        started = time.perf_counter()
        summary = RunSummary(self.output)
        self.timer = RunTimer()  # where the time goes: stats/timing/ (curate.timing)
        self._check_output()
        from curate.pool import check_executor

        check_executor(self.config.run.executor, self.address, self.config.file)
        # on a cluster, its CPUs (asked only when the run is sized afresh: a resume keeps the recorded cut)
        workers = (lambda: cluster_workers(self.address, self.workers)) if self.address else \
            self.workers or os.cpu_count() or 1
        self.sizing = sizing_for_run(self._path(MANIFEST), self.fingerprint, self.config.run.task_mb, workers)
        tasks, readers, inputs = plan_tasks(self.config, self.sizing)
        self.timer.add("plan", time.perf_counter() - started)
        self._planned_at = time.perf_counter()
        self._create_output()
        lock = output_lock(self.output, break_lock=self.break_lock)
        lock.acquire()
        try:
            summary.lock_taken_over = lock.previous
            prepared = self._prepare_output(inputs)
            summary.inputs_touched = self.touched
            if prepared:
                summary.already_complete = True
                summary.tasks_total = len(self.manifest.get("tasks", {}))
                summary.tasks_skipped = summary.tasks_total
                summary.docs = self.manifest.get("docs", 0)
                summary.rejects = self.manifest.get("rejects", 0)
                summary.ids_renamed = self.manifest.get("ids", {}).get("renamed", 0)
                return summary
            self._run(summary, tasks, readers, inputs)
        finally:
            lock.release()
        summary.seconds = time.perf_counter() - started
        return summary

    def _run(self, summary: RunSummary, tasks: list[Task], readers: dict[str, Reader], inputs: list[dict]) -> None:
        segments = build_segments(self.config)
        self.schemas = self._output_schemas(readers, inputs, segments)
        self._write_manifest(
            curate_version=__version__, versions=_versions(), fingerprint=self.fingerprint,
            config=self.config.to_dict(), config_file=self.config.file, inputs=inputs, complete=False,
            segments=[{"index": s.index, "global_stage": s.global_stage.name if s.global_stage else None,
                       "stages": [st.name for st, _, _ in s.stages]} for s in segments],
            tasks=self.manifest.get("tasks", {}), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            output_schema=self.schemas.describe(), plan=self.sizing.describe(),
        )
        from curate.pool import open_pool

        input_mb = sum(estimated_bytes(f["path"], f.get("bytes", 0))  # a .gz weighs what it decompresses to
                       for spec in inputs for f in spec["files"]) / (1 << 20)
        run = self.config.run
        timer = self.timer
        timer.add("prepare output", time.perf_counter() - self._planned_at)  # lock, manifest, output schema
        with open_pool(run.executor, self.workers, self.address, work_mb=input_mb * max(1, len(self.config.stages)),
                       limit_mb=run.in_process_mb, file=self.config.file,
                       show_progress=self.show_progress) as pool:
            summary.ray_start_seconds = pool.start_seconds
            summary.executor = timer.executor = pool.executor
            summary.executor_why = pool.why
            if pool.executor == "ray":
                timer.add("ray start", pool.start_seconds)
            pool.say(f"executor: {pool.executor} ({pool.why})")
            self._write_manifest(executor={"name": pool.executor, "why": pool.why, "workers": pool.size})
            segment_tasks = tasks
            for segment in segments:
                plan = self._plan(segment, final=segment.index == len(segments) - 1)
                if segment.global_stage is not None:
                    segment_tasks = self._run_global(segment, pool, summary)
                    if segment_tasks is None:
                        break
                done = done_task_ids(plan)  # one listing of stats/, not a request per task
                todo = largest_first([t for t in segment_tasks if task_id_for(t, segment.index) not in done], inputs)
                summary.tasks_total += len(segment_tasks)
                summary.tasks_skipped += len(segment_tasks) - len(todo)
                with timer.step("tasks", stage=self._label(segment), segment=segment.index, tasks=len(todo)):
                    outcomes, failed = pool.run(plan, todo, readers if segment.index == 0 else None,
                                                label=self._label(segment), total=len(segment_tasks),
                                                on_done=self._record_task, max_retries=self.config.run.max_retries)
                summary.tasks_run += len(outcomes)
                summary.failed.update(failed)
                if failed:
                    break  # a global step needs every shard; later segments wait for a rerun
                if segment.index == 0:
                    with timer.step("ids"):
                        self._unique_ids(plan, pool, summary)
        if pool.executor == "ray":
            timer.add("ray stop", pool.stop_seconds)
        summary.ray_stop_seconds = pool.stop_seconds
        with timer.step("stats and manifest"):
            self._finish(summary, segments)
        try:
            timer.write(self._path("stats"))
        except OSError as err:  # the run's output is whole without it: say so, do not fail the run
            log.warning("could not write the timing of this run: %s", err)

    def _unique_ids(self, plan: TaskPlan, pool, summary: RunSummary) -> None:
        """Every document of the run exists once after segment 0: make ids that collide unique (curate.ids)."""
        from curate.ids import make_unique

        shards = storage.glob(storage.join(plan.docs_dir, "*.parquet")) + storage.glob(self._path("rejects", "*.parquet"))
        result = make_unique(shards, self._path("work", "ids"))
        summary.ids_renamed = result["renamed"]
        if result["renamed"] and not result.get("reported"):
            pool.say(f"ids: {result['renamed']:,} documents shared their id with another one "
                     f"({result['colliding_ids']:,} ids); they got unique ids, the given one is kept in given_id")
        self._write_manifest(ids={"renamed": result["renamed"], "colliding_ids": result["colliding_ids"]})

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
        shards = storage.glob(self._path("work", f"segment{segment.index - 1}", "*.parquet"))
        workdir = self._path("work", stage.name)
        marker = storage.join(workdir, "_SUCCESS")
        if not storage.exists(marker):
            storage.makedirs(workdir)
            pool.say(f"{stage.name}: global step over {len(shards)} shards")
            t0 = time.perf_counter()
            try:
                result = stage.run(shards, workdir, workers=pool.size) or {}
            except Exception as err:  # noqa: BLE001 - reported, run marked failed
                log.exception("global stage %s failed", stage.name)
                summary.failed[f"global:{stage.name}"] = f"{type(err).__name__}: {err}"
                return None
            seconds = time.perf_counter() - t0
            self.timer.add_global(stage.name, segment.index, seconds, result)
            write_json_atomic(marker, {"summary": result, "seconds": seconds})
        if storage.is_remote(self.output):  # a footer and a row group per shard: many in flight, not one by one
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(16) as threads:
                sources = list(threads.map(_source_of_shard, shards))
        else:
            sources = [_source_of_shard(path) for path in shards]
        return [Task(source=source, format="parquet", path=path, index=i)
                for i, (source, path) in enumerate(zip(sources, shards))]

    def _record_task(self, outcome: TaskOutcome, task: Task) -> None:
        self.manifest.setdefault("tasks", {})[outcome.task_id] = {
            "segment": outcome.segment, "source": outcome.source, "path": task.path,
            "range": [task.start, task.end], "docs": outcome.docs, "rejects": outcome.rejects,
            "seconds": round(outcome.seconds, 3), "node": outcome.node,
        }
        now = time.monotonic()
        if now - self._manifest_written > 2.0:
            self._write_manifest()
            self._manifest_written = now

    def _finished_tasks(self) -> dict[str, dict]:
        """Every finished task, read back from the stats files (the ground truth of what is done)."""
        import duckdb

        pattern = self._path("stats", "*.parquet")
        files = storage.glob(pattern)
        if not files:
            return {}
        con = duckdb.connect()
        # the glob, also in an object store: DuckDB through fsspec given a list of 1,000 objects took 18 s
        # against moto, the glob 1.3 s (benchmarks/remote_output.py --small-objects)
        storage.register_duckdb(con, self.output)
        rows = con.execute("""
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
                if storage.is_remote(self.output):
                    storage.rmtree(self._path("work", f"segment{segment.index}"))
                else:
                    shutil.rmtree(self._path("work", f"segment{segment.index}"), ignore_errors=True)
            from curate.ids import DECISION

            if storage.exists(self._path("work", "ids", DECISION)):  # the counts stay, the id list goes
                storage.remove(self._path("work", "ids", DECISION))
        self._write_manifest(**updates)


def _count_rows(pattern: str) -> int:
    import pyarrow.parquet as pq

    if storage.is_remote(pattern):  # footers only, many in flight: one shard's latency is tens of ms
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:
            return sum(pool.map(storage.num_rows, storage.glob(pattern)))
    return sum(pq.ParquetFile(p).metadata.num_rows for p in glob.glob(pattern))


def _source_of_shard(path: str) -> str:
    """Shards are named after their task, whose id starts with the source name."""
    import pyarrow.parquet as pq

    if storage.is_remote(path):
        with storage.open_read(path) as f:
            shard = pq.ParquetFile(f)
            if shard.metadata.num_row_groups:
                return shard.read_row_group(0, columns=["source"])["source"][0].as_py()
        return storage.basename(path).split("-")[0]
    shard = pq.ParquetFile(path)
    if shard.metadata.num_row_groups:
        return shard.read_row_group(0, columns=["source"])["source"][0].as_py()
    return os.path.basename(path).split("-")[0]
