"""Tokenize a corpus into flat token shards on Ray, resumably.

Layout of ``TOKENS`` (see docs/tokenizer.md)::

    meta.json                      tokenizer, its sha256, dtype, eos id, vocab size
    <source>/<task>.bin            token ids, flat uint16 (uint32 if the vocabulary needs it), EOS after each document
    <source>/<task>.idx            uint64 offsets into the .bin: document i is tokens [idx[i], idx[i+1])
    <source>/<task>.docs.parquet   id, lang, offset, tokens: one row per document
    stats/<task>.parquet           source, lang, docs, tokens, bytes: DuckDB reads stats/*.parquet
    done/<task>                    empty marker: the task is committed and skipped on rerun

A task is one input file. Its files are written under temporary names and
renamed into place, the marker last, so a killed run leaves either a whole
task or one that the next run redoes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter, defaultdict
import dataclasses
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.remote import is_remote
from curate.schema import doc_id
from curate.tokenizers.corpus import InputFile, ReadCounts, read_documents
from curate.tokenizers.encoder import Encoder
from curate.tokenizers.params import TokenizeParams

__all__ = ["TokenizeParams", "read_tokens", "stats_table", "tokenize_corpus"]

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
    """One source's token shard of one task, under temporary names until ``commit``."""

    def __init__(self, output: str, source: str, task: str, dtype: np.dtype):
        self.folder = os.path.join(output, source_dir(source))
        os.makedirs(self.folder, exist_ok=True)
        self.base = os.path.join(self.folder, task)
        self.tmp = f".tmp-{os.getpid()}"
        self.dtype = dtype
        self.bin = open(self.base + ".bin" + self.tmp, "wb")
        self.offset = 0
        self.ids: list[str] = []
        self.langs: list[str | None] = []
        self.offsets: list[int] = []
        self.lengths: list[int] = []

    def write(self, ids: list[str], langs: list, flat: np.ndarray, lengths: np.ndarray) -> None:
        flat.astype(self.dtype).tofile(self.bin)
        starts = np.cumsum(lengths) - lengths + self.offset
        self.offsets.extend(starts.tolist())
        self.lengths.extend(lengths.tolist())
        self.ids.extend(ids)
        self.langs.extend(langs)
        self.offset += len(flat)

    def commit(self) -> str:
        self.bin.close()
        index = np.array(self.offsets + [self.offset], dtype=np.uint64)
        index.tofile(self.base + ".idx" + self.tmp)
        docs = pa.table({"id": pa.array(self.ids, pa.string()), "lang": pa.array(self.langs, pa.string()),
                         "offset": pa.array(self.offsets, pa.int64()), "tokens": pa.array(self.lengths, pa.int64())},
                        schema=DOCS_SCHEMA)
        pq.write_table(docs, self.base + ".docs.parquet" + self.tmp)
        for suffix in (".bin", ".idx", ".docs.parquet"):
            os.replace(self.base + suffix + self.tmp, self.base + suffix)
        return os.path.relpath(self.base + ".bin", os.path.dirname(self.folder))


_ENCODERS: dict[str, Encoder] = {}


def _encoder(model: bytes, sha256: str) -> Encoder:
    """One encoder per worker process and model: its segment cache stays warm from task to task."""
    if sha256 not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[sha256] = Encoder(model)
    return _ENCODERS[sha256]


def tokenize_task(item: InputFile, task: str, model: bytes, output: str, params: TokenizeParams,
                  meta: dict) -> dict:
    """Tokenize one input file into per-source shards, commit them, write its stats and its marker."""
    started, cpu_started = time.perf_counter(), time.process_time()
    encoder = _encoder(model, meta["tokenizer_sha256"])
    dtype = np.dtype(meta["dtype"])
    eos_id = meta["eos_id"] if params.eos else -1
    counts = ReadCounts()
    writers: dict[str, _ShardWriter] = {}
    totals: dict[tuple, Counter] = defaultdict(Counter)
    for table in read_documents(item, counts, params.text_field, txt_doc_chars=None):
        for start in range(0, table.num_rows, params.batch_docs):
            batch = table.slice(start, params.batch_docs)
            sources = pc.unique(batch["source"]).to_pylist()  # in order of first appearance
            for source in sources:
                part = batch if len(sources) == 1 else batch.filter(pc.equal(batch["source"], source))
                flat, lengths = encoder.encode_flat(part["text"].to_pylist(), eos_id)
                if source not in writers:
                    writers[source] = _ShardWriter(output, source, task, dtype)
                writers[source].write(part["id"].to_pylist(), part["lang"].to_pylist(), flat, lengths)
                # per language of the batch, not per document: one group-by in Arrow
                sums = pa.table({"lang": part["lang"], "tokens": lengths, "bytes": pc.binary_length(part["text"])}) \
                    .group_by("lang").aggregate([("tokens", "count"), ("tokens", "sum"), ("bytes", "sum")])
                for lang, docs, tokens, n_bytes in zip(*(sums[c].to_pylist() for c in
                                                         ("lang", "tokens_count", "tokens_sum", "bytes_sum"))):
                    totals[(source, lang)].update(docs=docs, tokens=tokens, bytes=n_bytes)
    shards = {source: writer.commit() for source, writer in writers.items()}
    rows = [{"task": task, "source": s, "lang": lang, "docs": c["docs"], "tokens": c["tokens"],
             "bytes": c["bytes"], "shard": shards[s]} for (s, lang), c in sorted(totals.items(), key=str)]
    stats_path = os.path.join(output, "stats", task + ".parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=STATS_SCHEMA), stats_path + ".tmp")
    os.replace(stats_path + ".tmp", stats_path)
    marker = os.path.join(output, "done", task)
    with open(marker + ".tmp", "w") as f:
        json.dump({"input": item.path, "skipped": dict(counts.skipped)}, f)
    os.replace(marker + ".tmp", marker)
    return {"task": task, "docs": sum(c["docs"] for c in totals.values()),
            "tokens": sum(c["tokens"] for c in totals.values()), "bytes": sum(c["bytes"] for c in totals.values()),
            "skipped": dict(counts.skipped), "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started}


def _input_size(path: str) -> int:
    if is_remote(path):
        from curate import storage

        return storage.size(path)
    return os.path.getsize(path)


def _clean_partial(output: str, tasks: set[str]) -> None:
    """Remove what killed attempts at ``tasks`` left behind (temporary files, uncommitted shards)."""
    for root, _, names in os.walk(output):
        for name in names:
            if name.split(".")[0] in tasks and name != "meta.json":
                os.remove(os.path.join(root, name))


def write_meta(output: str, model: bytes, tokenizer_path: str) -> dict:
    """Write ``meta.json``, or check that an existing one names the same tokenizer."""
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_proto=model)
    except RuntimeError as err:
        raise ValueError(f"{tokenizer_path}: not a SentencePiece model ({str(err).splitlines()[0][:200]})") from None
    meta = {"format_version": FORMAT_VERSION, "tokenizer": os.path.abspath(tokenizer_path),
            "tokenizer_sha256": hashlib.sha256(model).hexdigest(), "vocab_size": sp.get_piece_size(),
            "dtype": token_dtype(sp.get_piece_size()).name, "eos_id": sp.eos_id(), "bos_id": sp.bos_id(),
            "pad_id": sp.pad_id(), "unk_id": sp.unk_id()}
    path = os.path.join(output, "meta.json")
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old.get("tokenizer_sha256") != meta["tokenizer_sha256"]:
            raise ValueError(f"{output} holds tokens of another tokenizer ({old.get('tokenizer')}); "
                             "use a new output directory")
        return old
    os.makedirs(output, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(path + ".tmp", path)
    return meta


def tokenize_corpus(tokenizer_path: str, files: list[InputFile], output: str, params: TokenizeParams,
                    progress=None) -> dict:
    """Tokenize every input file not yet done on Ray; return a summary of this run.

    An input that cannot be read fails its own task only: it is listed under
    ``tasks_failed`` with the reason, left without a marker, and retried by the next run.
    """
    import ray

    from curate.pool import start_ray

    # Ray workers start in their own directory: everything they open must be absolute. Inputs may be in
    # an object store (a run written to s3://...); the tokens are written to a local folder.
    if is_remote(output):
        raise ValueError(f"--output {output}: token shards are written to a local folder (training memory-maps "
                         "them); give a local path, and copy the folder to the store afterwards if needed")
    output = os.path.abspath(output)
    files = [item if is_remote(item.path) else dataclasses.replace(item, path=os.path.abspath(item.path))
             for item in files]
    with open(tokenizer_path, "rb") as f:
        model = f.read()
    meta = write_meta(output, model, tokenizer_path)
    if params.eos and meta["eos_id"] < 0:
        raise ValueError(f"{tokenizer_path} has no EOS token: pass --no-eos or train it with eos_id")
    for folder in ("stats", "done"):
        os.makedirs(os.path.join(output, folder), exist_ok=True)
    tasks = {task_name(item): item for item in files}
    if len(tasks) != len(files):
        raise ValueError("two inputs map to the same task name: pass each file once")
    todo = {t: item for t, item in tasks.items() if not os.path.exists(os.path.join(output, "done", t))}
    _clean_partial(output, set(todo))
    started = time.perf_counter()
    results: list[dict] = []
    failed: dict[str, str] = {}
    if todo:
        workers = params.workers or os.cpu_count() or 1
        # the user's cluster (RAY_ADDRESS) or a fresh, quiet local instance, as `curate run` does
        started_ray = start_ray(workers, os.environ.get("RAY_ADDRESS"))
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(tokenize_task)
            model_ref = ray.put(model)
            # biggest inputs first: the last tasks to finish are the short ones
            order = sorted(todo, key=lambda t: -_input_size(todo[t].path))
            pending = {remote.remote(todo[t], t, model_ref, output, params, meta): t for t in order}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:  # this input only: the others go on
                        cause = err.cause if getattr(err, "cause", None) is not None else err
                        failed[task] = f"{todo[task].path}: {type(cause).__name__}: {cause}"
                        continue
                    results.append(result)
                    if progress is not None:
                        progress(result)
        finally:
            if started_ray:
                ray.shutdown()
    seconds = time.perf_counter() - started
    new_bytes = sum(r["bytes"] for r in results)
    skipped: Counter = Counter()
    for r in results:
        skipped.update(r["skipped"])
    committed = stats_table(output)
    return {"output": output, "tasks": len(tasks), "tasks_done_before": len(tasks) - len(todo),
            "tasks_run": len(results), "tasks_failed": failed,
            # this run's work, then everything committed in the folder (earlier runs and resumes included)
            "docs_this_run": sum(r["docs"] for r in results), "tokens_this_run": sum(r["tokens"] for r in results),
            "bytes_this_run": new_bytes,
            "tasks_total": len(_done_tasks(output)),
            "docs_total": int(pc.sum(committed["docs"]).as_py() or 0),
            "tokens_total": int(pc.sum(committed["tokens"]).as_py() or 0),
            "bytes_total": int(pc.sum(committed["bytes"]).as_py() or 0),
            "skipped": dict(skipped),
            "seconds": round(seconds, 2), "mb_per_s": round(new_bytes / 1e6 / seconds, 2) if results else None,
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in results), 2),
            "dtype": meta["dtype"], "params": asdict(params)}


def read_tokens(output: str, source: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Memory-map every committed shard (of one source, or all): (tokens, offsets) pairs, in task order."""
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
    return {t for t in os.listdir(os.path.join(output, "done")) if not t.endswith(".tmp")}


def stats_table(output: str) -> pa.Table:
    """All committed tasks' stats rows."""
    paths = sorted(os.path.join(output, "stats", f"{t}.parquet") for t in _done_tasks(output))
    tables = [pq.read_table(p, schema=STATS_SCHEMA) for p in paths if os.path.exists(p)]
    return pa.concat_tables(tables) if tables else STATS_SCHEMA.empty_table()
