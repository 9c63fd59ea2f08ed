"""Tokenize a corpus into flat token shards, resumably, in a local folder or an object store.

Layout of ``TOKENS`` (see docs/tokenizer.md)::

    meta.json                      tokenizer, its sha256, dtype, eos id, vocab size, task_mb
    <source>/<task>.bin            token ids, flat uint16 (uint32 if the vocabulary needs it), EOS after each document
    <source>/<task>.idx            uint64 offsets into the .bin: document i is tokens [idx[i], idx[i+1])
    <source>/<task>.docs.parquet   id, lang, offset, tokens: one row per document
    stats/<task>.parquet           source, lang, docs, tokens, bytes: DuckDB reads stats/*.parquet
    done/<task>                    marker: the task is committed and skipped on rerun

A task is one input file, or a range of rows of a big Parquet file (``corpus.parquet_row_ranges``:
``<file task>-r<first>-<end>``). Its files are written to a temporary local name and then put in place
whole (renamed locally, uploaded to an object store: ``curate.storage``), the shards first, then the
stats, the marker last: a task is committed exactly when its marker exists. A killed run leaves
either a whole task or one that the next run redoes; whatever an uncommitted task left is removed
before it runs again and is never read (readers take the shards the committed stats name).

Where tasks run (``TokenizeParams.executor``): Ray on a cluster; on one machine threads of this process
(rank BPE encodes outside the GIL), else this process and a pool of worker processes; this process alone for
small inputs (``choose_executor``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter, defaultdict
import dataclasses
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import storage
from curate.remote import is_remote
from curate.schema import doc_id
from curate.arrays import int64_array, string_array, table_from_rows, to_numpy
from curate.tokenizers.corpus import InputFile, ReadCounts, estimated_text_bytes, parquet_row_ranges, read_documents
from curate.tokenizers.encoder import Encoder
from curate.tokenizers.params import TokenizeParams

__all__ = ["TokenizeParams", "choose_executor", "read_tokens", "stats_table", "tokenize_corpus"]

FORMAT_VERSION = 1
STATS_SCHEMA = pa.schema([
    pa.field("task", pa.string()), pa.field("source", pa.string()), pa.field("lang", pa.string()),
    pa.field("docs", pa.int64()), pa.field("tokens", pa.int64()), pa.field("bytes", pa.int64()),
    pa.field("shard", pa.string()),
])
DOCS_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("lang", pa.string()),
                         pa.field("offset", pa.int64()), pa.field("tokens", pa.int64())])


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def task_name(item: InputFile) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(item.path).split(".")[0])[:40] or "input"
    return f"{stem}-{doc_id(item.source, item.path if is_remote(item.path) else os.path.abspath(item.path))[:12]}"


def source_dir(source: str) -> str:
    """A source name as a safe folder name (the real name is in the stats)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", source).strip(".") or "_"
    return safe if safe == source else f"{safe}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"


class _ShardWriter:
    """One source's token shard of one task: written to temporary local files, put in place by ``commit``
    (renamed beside them in a local output; uploaded whole to an object store)."""

    def __init__(self, output: str, source: str, task: str, dtype: np.dtype):
        self.shard = f"{source_dir(source)}/{task}.bin"  # relative to the output, as the stats name it
        self.base = storage.join(output, source_dir(source), task)
        if not is_remote(output):
            os.makedirs(os.path.dirname(self.base), exist_ok=True)
        self.local = {suffix: storage.local_temp(self.base + suffix) for suffix in (".bin", ".idx", ".docs.parquet")}
        self.dtype = dtype
        self.bin = open(self.local[".bin"], "wb")
        self.offset = 0
        self.ids: list[pa.Array] = []
        self.langs: list[pa.Array] = []
        self.offsets: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []

    def write(self, ids: pa.Array | list, langs: pa.Array | list, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents: their ids and languages (Arrow string arrays, or lists of str), their tokens."""
        flat.astype(self.dtype).tofile(self.bin)
        ids = ids if isinstance(ids, pa.Array) else string_array(ids)
        langs = langs if isinstance(langs, pa.Array) else string_array(langs)
        lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets.append(np.cumsum(lengths) - lengths + self.offset)
        self.lengths.append(lengths)
        self.ids.append(ids)
        self.langs.append(langs)
        self.offset += len(flat)

    def commit(self) -> str:
        self.bin.close()
        offsets = np.concatenate(self.offsets).astype(np.int64)
        np.append(offsets, self.offset).astype(np.uint64).tofile(self.local[".idx"])
        docs = pa.table({"id": pa.concat_arrays(self.ids), "lang": pa.concat_arrays(self.langs),
                         "offset": int64_array(offsets), "tokens": int64_array(np.concatenate(self.lengths))},
                        schema=DOCS_SCHEMA)
        pq.write_table(docs, self.local[".docs.parquet"])
        for suffix, local in self.local.items():
            storage.put_file(local, self.base + suffix)
        return self.shard

    def discard(self) -> None:
        """The task failed: remove the temporary files (a store never saw them)."""
        self.bin.close()
        for local in self.local.values():
            if os.path.exists(local):
                os.remove(local)


_ENCODERS: dict[str, Encoder] = {}


def _encoder(model: bytes, sha256: str) -> Encoder:
    """One encoder per worker process and model: its segment cache stays warm from task to task."""
    if sha256 not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[sha256] = Encoder(model)
    return _ENCODERS[sha256]


def tokenize_task(item: InputFile, task: str, model: bytes, output: str, params: TokenizeParams,
                  meta: dict, rows: tuple[int, int] | None = None, cpu_clock: Callable[[], float] = time.process_time
                  ) -> dict:
    """Tokenize one input file (or its ``rows``) into per-source shards, commit them, write its stats, then
    its marker. ``cpu_clock``: ``time.thread_time`` where other threads of the process run tasks too."""
    started, cpu_started, clock = time.perf_counter(), cpu_clock(), time.time()
    encoder = _encoder(model, meta["tokenizer_sha256"])
    dtype = np.dtype(meta["dtype"])
    eos_id = meta["eos_id"] if params.eos else -1
    counts = ReadCounts()
    writers: dict[str, _ShardWriter] = {}
    totals: dict[tuple, Counter] = defaultdict(Counter)
    bytes_of: dict[str, list[np.ndarray]] = defaultdict(list)  # each document's text bytes, per source
    try:
        for table in read_documents(item, counts, params.text_field, txt_doc_chars=None, rows=rows):
            for start in range(0, table.num_rows, params.batch_docs):
                batch = table.slice(start, params.batch_docs)
                sources = pc.unique(batch["source"]).to_pylist()  # in order of first appearance
                for source in sources:
                    part = batch if len(sources) == 1 else batch.filter(pc.equal(batch["source"], source))
                    flat, lengths = encoder.encode_flat(part["text"].to_pylist(), eos_id)
                    if source not in writers:
                        writers[source] = _ShardWriter(output, source, task, dtype)
                    writers[source].write(part["id"].combine_chunks(), part["lang"].combine_chunks(), flat, lengths)
                    bytes_of[source].append(to_numpy(pc.binary_length(part["text"]).combine_chunks(), np.int32))
        # per language, not per document: once per source and task (not per batch)
        for source, writer in writers.items():
            for lang, docs, tokens, n_bytes in _per_language(pa.concat_arrays(writer.langs),
                                                             np.concatenate(writer.lengths),
                                                             np.concatenate(bytes_of[source])):
                totals[(source, lang)].update(docs=docs, tokens=tokens, bytes=n_bytes)
        shards = {source: writer.commit() for source, writer in writers.items()}
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
    rows_out = [{"task": task, "source": s, "lang": lang, "docs": c["docs"], "tokens": c["tokens"],
                 "bytes": c["bytes"], "shard": shards[s]} for (s, lang), c in sorted(totals.items(), key=str)]
    stats_path = storage.join(output, "stats", task + ".parquet")
    with storage.staged(stats_path) as local:
        pq.write_table(table_from_rows(rows_out, STATS_SCHEMA), local)
    marker = {"input": item.path, "skipped": dict(counts.skipped)}
    if rows is not None:
        marker["rows"] = list(rows)
    storage.write_bytes(storage.join(output, "done", task), json.dumps(marker).encode())
    return {"task": task, "docs": sum(c["docs"] for c in totals.values()),
            "tokens": sum(c["tokens"] for c in totals.values()), "bytes": sum(c["bytes"] for c in totals.values()),
            "skipped": dict(counts.skipped), "seconds": time.perf_counter() - started,
            "cpu_seconds": cpu_clock() - cpu_started, "node": _node(), "pid": os.getpid(), "started": clock}


def _per_language(langs: pa.Array, tokens: np.ndarray, n_bytes: np.ndarray) -> Iterator[tuple]:
    """(lang, documents, tokens, bytes) for each language of a task's documents (null: a language of its own)."""
    codes = pc.dictionary_encode(langs, null_encoding="encode")
    index = to_numpy(codes.indices, np.int32)
    n = len(codes.dictionary)
    docs = np.bincount(index, minlength=n)
    # float64 sums of integers, exact below 2**53
    token_sums = np.bincount(index, weights=tokens, minlength=n).astype(np.int64)
    byte_sums = np.bincount(index, weights=n_bytes, minlength=n).astype(np.int64)
    return zip(codes.dictionary.to_pylist(), docs.tolist(), token_sums.tolist(), byte_sums.tolist())


def _node() -> str:
    """Where a task ran: its Ray node on a cluster, else this machine."""
    ray = __import__("sys").modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            return ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - a driver outside a task
            pass
    return os.uname().nodename


@dataclass(frozen=True)
class Planned:
    """One task of a run: a whole input file, or ``rows`` [first, end) of a big Parquet file."""

    name: str
    item: InputFile
    rows: tuple[int, int] | None
    text_bytes: int
    """Estimated text bytes (Parquet metadata, else the file size): orders the tasks, sizes the run."""


def plan_tasks(files: list[InputFile], task_mb: float | None, text_field: str = "text") -> list[Planned]:
    """The run's tasks: a file each, a big Parquet file cut into row ranges (``task_mb=None``: never cut,
    the layout of token folders written before ``task_mb`` was recorded)."""
    planned: list[Planned] = []
    for item in files:
        size = estimated_text_bytes(item, text_field)
        ranges = parquet_row_ranges(item, task_mb * 1e6, text_field) if task_mb else None
        if not ranges:
            planned.append(Planned(task_name(item), item, None, size))
            continue
        total = ranges[-1][1] - ranges[0][0]
        for first, end in ranges:
            planned.append(Planned(f"{task_name(item)}-r{first:010d}-{end:010d}", item, (first, end),
                                   size * (end - first) // max(total, 1)))
    return planned


#: Folders of a token output that are not a source's shards.
_RESERVED = ("stats", "done")


def _clean_partial(output: str, tasks: set[str]) -> None:
    """Remove whatever killed attempts at ``tasks`` left behind (temporary files, shards and stats of a task
    without its marker). In an object store: one listing per folder, then a DELETE per leftover."""
    if not is_remote(output):
        for root, _, names in os.walk(output):
            for name in names:
                if name.split(".")[0] in tasks and name != "meta.json":
                    os.remove(os.path.join(root, name))
        return
    for folder in storage.listdir(output):
        if folder in ("meta.json", "done"):
            continue
        for name in storage.listdir(storage.join(output, folder)):
            if name.split(".")[0] in tasks:
                storage.remove(storage.join(output, folder, name))


def write_meta(output: str, model: bytes, tokenizer_path: str, task_mb: float | None = None) -> dict:
    """Write ``meta.json``, or check that an existing one names the same tokenizer (and task size)."""
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_proto=model)
    except RuntimeError as err:
        raise ValueError(f"{tokenizer_path}: not a SentencePiece model ({str(err).splitlines()[0][:200]})") from None
    meta = {"format_version": FORMAT_VERSION, "tokenizer": os.path.abspath(tokenizer_path),
            "tokenizer_sha256": hashlib.sha256(model).hexdigest(), "vocab_size": sp.get_piece_size(),
            "dtype": token_dtype(sp.get_piece_size()).name, "eos_id": sp.eos_id(), "bos_id": sp.bos_id(),
            "pad_id": sp.pad_id(), "unk_id": sp.unk_id()}
    if task_mb is not None:
        meta["task_mb"] = task_mb
    path = storage.join(output, "meta.json")
    if storage.exists(path):
        old = storage.read_json(path)
        if old.get("tokenizer_sha256") != meta["tokenizer_sha256"]:
            raise ValueError(f"{output} holds tokens of another tokenizer ({old.get('tokenizer')}); "
                             "use a new output directory")
        if task_mb is not None and "task_mb" in old and old["task_mb"] != task_mb:
            raise ValueError(f"{output} was tokenized with --task-mb {old['task_mb']:g}: pass the same to resume it "
                             "(big files are cut into tasks by it; another cut would tokenize documents twice)")
        return old
    storage.makedirs(output)
    storage.write_bytes(path, json.dumps(meta, indent=2).encode())
    return meta


# ---------------------------------------------------------------- where tasks run

RAY, PROCESSES, IN_PROCESS = "ray", "processes", "in-process"


def choose_executor(setting: str, *, workers: int, address: str | None, tasks: int, text_mb: float,
                    limit_mb: float, threads: bool = False) -> tuple[str, str]:
    """(executor, why in words) for a run of ``tasks`` tasks holding ``text_mb`` MB of text.

    A cluster address, or a Ray this process is already connected to (a notebook, a test), means Ray. On
    one machine several workers are a process pool: it starts and stops in 0.5 s where an embedded Ray
    takes about 4 (measured: docs/tokenizer.md), and a tokenize task needs nothing Ray adds on one
    machine (no actors, no object store: a task reads its file and writes its shards). One worker, one
    task or a small input run in this process: nothing to start at all. ``threads``: the encoder runs outside
    the GIL (rank BPE: tiktoken's core and SentencePiece), so several workers are threads of this process,
    with nothing to start either (a pool process starts its first task ~0.3 s late on a quiet machine, seconds
    on a loaded one, and leaves a core idle at the end while the other finishes).
    """
    if address and setting in (PROCESSES, IN_PROCESS):
        raise ValueError(f"--executor {setting} cannot run on a cluster (--address / RAY_ADDRESS {address}); "
                         "use auto or ray, or drop the address")
    if address:
        return RAY, f"cluster {address}"
    if setting != "auto":
        return setting, f"--executor {setting}"
    ray = __import__("sys").modules.get("ray")
    if ray is not None and ray.is_initialized():
        return RAY, "this process is already connected to Ray"
    if workers == 1:
        return IN_PROCESS, "one worker"
    if tasks <= 1:
        return IN_PROCESS, "one task"
    if text_mb <= limit_mb:
        return IN_PROCESS, f"small input: {text_mb:.3g} MB of text <= in_process_mb={limit_mb:g}"
    if threads:
        return IN_PROCESS, (f"{workers} threads in this process (the encoder runs outside the GIL; "
                            f"{text_mb:.3g} MB of text, {tasks} tasks)")
    return PROCESSES, f"{workers} worker processes on this machine ({text_mb:.3g} MB of text, {tasks} tasks)"


def _run_in_process(jobs: list[tuple], threads: int = 1, encoder: Encoder | None = None
                    ) -> Iterator[tuple[str, dict | None, str | None]]:
    """The tasks in this process: one after another, or on ``threads`` threads sharing ``encoder`` (rank BPE
    only: see ``Encoder``); each thread takes the next task (biggest first) when it finishes one."""
    if threads > 1 and len(jobs) > 1 and encoder is not None and encoder.rank_bpe is not None:
        yield from _run_threads(jobs, threads)
        return
    for task, args in jobs:
        try:
            yield task, tokenize_task(*args), None
        except Exception as err:  # noqa: BLE001 - this input only: the others go on
            yield task, None, f"{args[0].path}: {type(err).__name__}: {err}"


def _run_threads(jobs: list[tuple], threads: int) -> Iterator[tuple[str, dict | None, str | None]]:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    # a task's CPU time is its thread's (not that of SentencePiece's helper threads: the run's total is the
    # process's, tokenize_corpus); its batch call runs there, faster than a call per text on the task's thread
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tokenize")
    try:
        running = {pool.submit(tokenize_task, *args, cpu_clock=time.thread_time): (task, args) for task, args in jobs}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task, args = running.pop(future)
                try:
                    yield task, future.result(), None
                except Exception as err:  # noqa: BLE001 - this input only: the others go on
                    yield task, None, f"{args[0].path}: {type(err).__name__}: {err}"
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_processes(jobs: list[tuple], workers: int) -> Iterator[tuple[str, dict | None, str | None]]:
    """``workers`` at work on one machine: this process (a thread of it) and a ``concurrent.futures`` pool of
    ``workers - 1`` processes, started by a fork server (a clean process that has imported nothing: forking the
    driver after pyarrow's threads started can hang at exit). Whoever finishes a task takes the next one
    (biggest first), so all stay busy to the end.

    Why this process works too: a pool process starts its first task ~0.5 CPU-s after the pool starts (the
    fork server's imports, then its encoder), on two cores a quarter of a 50 MB run; this process has imported
    everything already and starts at once. ``workers == 1`` (``--executor processes``): one pool process.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("forkserver")
    # imported once in the fork server, not in every worker (~0.4 CPU-seconds each): only imports, no
    # threads started there. (Not pandas: a task builds its Arrow arrays without ``pa.array``, which imports it.)
    context.set_forkserver_preload(["curate.tokenizers.tokenize", "tiktoken"])
    here = workers > 1
    pool = ProcessPoolExecutor(max_workers=workers - here, mp_context=context)
    local = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") if here else None
    queue = deque(jobs)
    running: dict = {}
    broken = False  # a pool process died: the pool takes no more tasks (this process goes on with them)

    def hand_out(executor) -> None:
        nonlocal broken
        task, args = queue.popleft()
        try:
            running[executor.submit(tokenize_task, *args)] = (task, args, executor)
        except BrokenProcessPool:
            broken = True
            queue.appendleft((task, args))

    try:
        # this process's task first: starting the pool waits until the fork server has made its imports
        if local is not None and queue:
            hand_out(local)
        for _ in range(min(workers - here, len(queue))):
            hand_out(pool)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task, args, executor = running.pop(future)
                try:
                    result, error = future.result(), None
                except BrokenProcessPool:  # a worker died (OOM killer, a signal): no marker, a rerun redoes it
                    result, error, broken = None, f"{args[0].path}: a worker process died (rerun to retry)", True
                except Exception as err:  # noqa: BLE001 - this input only
                    result, error = None, f"{args[0].path}: {type(err).__name__}: {err}"
                if queue and not (executor is pool and broken):
                    hand_out(executor)  # the next task to whoever is free
                yield task, result, error
        for task, args in queue:  # left when the pool broke and this process takes no tasks (workers == 1)
            yield task, None, f"{args[0].path}: a worker process died (rerun to retry)"
    finally:
        if local is not None:
            local.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)


def _run_ray(jobs: list[tuple], workers: int, address: str | None) -> Iterator[tuple[str, dict | None, str | None]]:
    import ray

    from curate.pool import start_ray, stop_ray

    started_ray = start_ray(workers, address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(tokenize_task)
        model_ref = None
        pending = {}
        for task, args in jobs:
            if model_ref is None:
                model_ref = ray.put(args[2])
            pending[remote.remote(args[0], args[1], model_ref, *args[3:])] = (task, args)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task, args = pending.pop(ref)
                try:
                    yield task, ray.get(ref), None
                except ray.exceptions.RayError as err:  # this input only: the others go on
                    cause = err.cause if getattr(err, "cause", None) is not None else err
                    yield task, None, f"{args[0].path}: {type(cause).__name__}: {cause}"
    finally:
        if started_ray:
            stop_ray()


def bring_local_hint(output: str) -> str:
    """What to run to read a token folder that is in an object store (training memory-maps local files)."""
    scheme = output.partition("://")[0].lower()
    copy = (f"aws s3 sync {output.rstrip('/')}/ ./tokens/" if scheme in ("s3", "s3a") else
            f"gcloud storage rsync -r {output.rstrip('/')}/ ./tokens/" if scheme in ("gs", "gcs") else
            f"fsspec: fsspec.filesystem('{scheme}').get('{output.rstrip('/')}/', './tokens/', recursive=True)")
    return f"copy it to a local folder first ({copy}, or fsspec's get(..., recursive=True))"


def tokenize_corpus(tokenizer_path: str, files: list[InputFile], output: str, params: TokenizeParams,
                    progress=None, *, address: str | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Tokenize every task not yet done; return a summary of this run.

    ``output`` is a local folder or an object-store prefix (``s3://bucket/tokens/``). ``address`` is a Ray
    cluster's (default: RAY_ADDRESS). An input that cannot be read fails its own task only: it is listed
    under ``tasks_failed`` with the reason, left without a marker, and retried by the next run.
    """
    address = address if address is not None else (os.environ.get("RAY_ADDRESS") or None)
    # workers (Ray's, the pool's) start in their own directory: everything they open must be absolute
    output = storage.normalize(output)
    files = [item if is_remote(item.path) else dataclasses.replace(item, path=os.path.abspath(item.path))
             for item in files]
    with open(tokenizer_path, "rb") as f:
        model = f.read()
    old_meta = storage.join(output, "meta.json")
    # a folder tokenized before task_mb was recorded keeps its whole-file tasks (their markers name them)
    task_mb = params.task_mb if not storage.exists(old_meta) or "task_mb" in storage.read_json(old_meta) else None
    meta = write_meta(output, model, tokenizer_path, task_mb)
    if params.eos and meta["eos_id"] < 0:
        raise ValueError(f"{tokenizer_path} has no EOS token: pass --no-eos or train it with eos_id")
    for folder in _RESERVED:
        storage.makedirs(storage.join(output, folder))
    planned = plan_tasks(files, task_mb, params.text_field)
    tasks = {p.name: p for p in planned}
    if len(tasks) != len(planned):
        raise ValueError("two inputs map to the same task name: pass each file once")
    done_before = _done_tasks(output)
    todo = {t: p for t, p in tasks.items() if t not in done_before}
    if todo:
        _clean_partial(output, set(todo))
    started, clock, cpu_started = time.perf_counter(), time.time(), time.process_time()
    results: list[dict] = []
    failed: dict[str, str] = {}
    workers = params.workers or os.cpu_count() or 1
    text_mb = sum(p.text_bytes for p in todo.values()) / 1e6
    # built here when tasks may run in this process: whether they can run on threads depends on it
    encoder = (_encoder(model, meta["tokenizer_sha256"])
               if todo and not address and params.executor in ("auto", IN_PROCESS) else None)
    threads_ok = encoder is not None and encoder.rank_bpe is not None
    executor, why = choose_executor(params.executor, workers=workers, address=address, tasks=len(todo),
                                    text_mb=text_mb, limit_mb=params.in_process_mb, threads=threads_ok)
    if executor in (PROCESSES, IN_PROCESS):
        workers = min(workers, len(todo)) if executor == PROCESSES or threads_ok else 1
    if todo:
        if say is not None:
            say(f"executor: {executor} ({why}); {len(todo)} tasks, {text_mb:.3g} MB of text")
        # biggest first: the last tasks to finish are the short ones
        order = sorted(todo, key=lambda t: (-todo[t].text_bytes, t))
        jobs = [(t, (todo[t].item, t, model, output, params, meta, todo[t].rows)) for t in order]
        runs = (_run_ray(jobs, workers, address) if executor == RAY else
                _run_processes(jobs, workers) if executor == PROCESSES else _run_in_process(jobs, workers, encoder))
        for task, result, error in runs:
            if error is not None:
                failed[task] = error
                continue
            results.append(result)
            if progress is not None:
                progress(result)
    seconds = time.perf_counter() - started
    # in this process (one after another or on threads) the run's CPU is the process's: on threads a task counts
    # its own thread only, not SentencePiece's helper threads
    run_cpu = time.process_time() - cpu_started if executor == IN_PROCESS and results else None
    new_bytes = sum(r["bytes"] for r in results)
    skipped: Counter = Counter()
    for r in results:
        skipped.update(r["skipped"])
    committed = stats_table(output)
    summary = {"output": output, "tasks": len(tasks), "tasks_done_before": len(tasks) - len(todo),
               "tasks_run": len(results), "tasks_failed": failed,
               "executor": executor if todo else None, "executor_why": why if todo else "nothing to do",
               "workers": workers if todo else 0,
               "nodes": len({r["node"] for r in results}),
               # this run's work, then everything committed in the folder (earlier runs and resumes included)
               "docs_this_run": sum(r["docs"] for r in results), "tokens_this_run": sum(r["tokens"] for r in results),
               "bytes_this_run": new_bytes,
               "tasks_total": len(_done_tasks(output)),
               "docs_total": int(pc.sum(committed["docs"]).as_py() or 0),
               "tokens_total": int(pc.sum(committed["tokens"]).as_py() or 0),
               "bytes_total": int(pc.sum(committed["bytes"]).as_py() or 0),
               "skipped": dict(skipped),
               "seconds": round(seconds, 2), "processes": _process_times(results, clock, run_cpu),
               "mb_per_s": round(new_bytes / 1e6 / seconds, 2) if results else None,
               "cpu_seconds": round(run_cpu if run_cpu is not None else sum(r["cpu_seconds"] for r in results), 2),
               "dtype": meta["dtype"], "params": asdict(params)}
    if is_remote(output):
        summary["bring_local"] = bring_local_hint(output)
    return summary


def _process_times(results: list[dict], clock: float, run_cpu: float | None = None) -> list[dict]:
    """Where the tasks' time went, per worker process (one machine: the same clock): its tasks, when its first
    began and its last ended (seconds from the start of the tasks), the seconds and CPU-seconds of its tasks
    (``run_cpu``: the run's, all in this process). The gap before a process's first task is its start; the gap
    between the last ends, idle time at the end; ``busy_s`` above the span: tasks on several threads."""
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        by[(r["node"], r["pid"])].append(r)
    return [{"node": node, "pid": pid, "tasks": len(rs),
             "first_began_s": round(min(r["started"] for r in rs) - clock, 2),
             "last_ended_s": round(max(r["started"] + r["seconds"] for r in rs) - clock, 2),
             "busy_s": round(sum(r["seconds"] for r in rs), 2),
             "cpu_s": round(run_cpu if run_cpu is not None else sum(r["cpu_seconds"] for r in rs), 2)}
            for (node, pid), rs in sorted(by.items(), key=lambda kv: min(r["started"] for r in kv[1]))]


def read_tokens(output: str, source: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Memory-map every committed shard (of one source, or all): (tokens, offsets) pairs, in task order."""
    if is_remote(output):
        raise ValueError(f"{output}: token shards are memory-mapped from a local folder; {bring_local_hint(output)}")
    with open(os.path.join(output, "meta.json")) as f:
        dtype = np.dtype(json.load(f)["dtype"])
    stats = stats_table(output)
    shards = sorted(set(stats["shard"].to_pylist()) if source is None else
                    set(stats.filter(pc.equal(stats["source"], source))["shard"].to_pylist()))
    out = []
    for shard in shards:
        path = os.path.join(output, shard)
        tokens = np.memmap(path, dtype=dtype, mode="r") if os.path.getsize(path) else np.zeros(0, dtype)
        out.append((tokens, np.fromfile(path[: -len(".bin")] + ".idx", dtype=np.uint64)))
    return out


def _done_tasks(output: str) -> set[str]:
    """Committed tasks: their markers (task names hold no dot; temporary names do)."""
    return {t for t in storage.listdir(storage.join(output, "done")) if "." not in t}


def stats_table(output: str) -> pa.Table:
    """All committed tasks' stats rows (in an object store: a GET per task)."""
    paths = sorted(storage.join(output, "stats", f"{t}.parquet") for t in _done_tasks(output))
    tables = []
    for path in paths:
        if is_remote(path):
            tables.append(storage.read_table(path, schema=STATS_SCHEMA))
        elif os.path.exists(path):
            # ParquetFile.read, not pq.read_table: that imports pandas, 0.14 s of a process-pool run's driver
            table = pq.ParquetFile(path).read()
            tables.append(table.cast(STATS_SCHEMA) if table.schema.equals(STATS_SCHEMA)
                          else storage.read_table(path, schema=STATS_SCHEMA))
    return pa.concat_tables(tables) if tables else STATS_SCHEMA.empty_table()
