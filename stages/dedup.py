"""Deduplication across the whole run: URL, exact text, and MinHash-LSH near-duplicates.

``run`` is a sequence of steps over files in ``workdir`` (each task leaves a
``_done/<step>-<n>.json`` marker holding its result, so a rerun skips what
finished). ``workdir`` and the shards may be local or in an object store
(``s3://``; every file goes through ``curate.storage``), so the tasks can run on
Ray nodes that share no disk. The tasks run on actors of the stage's own
(``curate.pool.step_runner``), ended when the last step is done, or in this
process when no Ray runs:

1. ``map``     per shard: node key, URL key, exact-text hash, MinHash signature
               and band keys; keys are written hash-partitioned (the shuffle).
2. ``url``     per partition: same normalized URL -> keep the latest fetch.
3. ``exact``   per partition: same normalized text -> keep the best node key.
4. ``bands``   per partition: documents sharing a band key -> candidate edges.
5. ``verify``  (optional) two hops keyed by shard attach both signatures and
               keep pairs whose estimated Jaccard reaches the threshold.
6. ``cc``      large-star / small-star rounds until the edges stop changing.
7. ``final``   resolve every duplicate to its cluster's kept document; write
               ``decisions.parquet`` (only documents in clusters of 2+).

A document's node key orders winners: ``keep: first`` compares input order
(shard order, then row), ``keep: quality`` the highest ``quality_score`` first
(at 1/65535 resolution), then input order. ``process`` attaches ``dup_cluster_id``
(the kept document's id), ``dup_cluster_size`` and ``dup_of`` to every row and
rejects the losers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from curate import storage
from curate.schema import ID, TEXT, URL
from curate.stage import GlobalStage, StageResult
from curate.stages import dedup_graph as graph
from curate.stages import minhash

ORDINAL_BITS = 47
ORDINAL_MASK = (1 << ORDINAL_BITS) - 1
PRIORITY_LEVELS = 65535

URL_DUPLICATE = "url-duplicate"
EXACT_DUPLICATE = "exact-duplicate"
NEAR_DUPLICATE = "near-duplicate"
REASON_CODES = [None, URL_DUPLICATE, EXACT_DUPLICATE, NEAR_DUPLICATE]

DECISION_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string()),
        pa.field("reason", pa.string()),
        pa.field("dup_of", pa.string()),
        pa.field("dup_cluster_id", pa.string()),
        pa.field("dup_cluster_size", pa.int64()),
    ]
)
_URL_PATTERN = (
    r"^(?:[a-zA-Z][a-zA-Z0-9+.\-]*://)?(?:[^@/?#]*@)?(?P<host>[^/?#:]*)"
    r"(?::(?P<port>[0-9]*))?(?P<path>[^?#]*)(?P<query>\?[^#]*)?"
)


@dataclass
class DedupParams:
    #: Jaccard similarity above which two documents are near-duplicates.
    threshold: float = 0.8
    num_perm: int = 128
    seed: int = 1
    #: Explicit LSH bands x rows (both or neither); by default derived from threshold
    #: by minimizing fp_weight * P(false positive) + fn_weight * P(false negative)
    #: (datasketch's rule). Candidates are verified, so a false positive only costs a
    #: comparison while a false negative loses a duplicate: hence 0.1 / 0.9 (14 x 9
    #: at 0.8; datasketch's 0.5 / 0.5 gives 9 x 13, which finds a 0.85 pair 69% of the time).
    bands: int | None = None
    rows: int | None = None
    fp_weight: float = 0.1
    fn_weight: float = 0.9
    #: Word n-grams for space-delimited text, character n-grams for Chinese/Japanese.
    word_ngram: int = 5
    char_ngram: int = 5
    #: Without a usable ``lang``: character shingles when this share of characters is CJK.
    cjk_min_ratio: float = 0.3
    url: bool = True
    exact: bool = True
    fuzzy: bool = True
    #: Keep an LSH candidate pair only if its signatures agree on >= threshold of positions.
    verify: bool = True
    keep: Literal["first", "quality"] = "first"
    quality_column: str = "quality_score"
    fetch_time_column: str = "fetch_time"
    lang_column: str = "lang"
    #: Shuffle partitions (0: one per ``PARTITION_DOCS`` documents, at least one and at most four per worker).
    partitions: int = 0
    batch_rows: int = 1024
    #: Longer documents are compared on their first this many characters (bounds memory per batch).
    max_text_chars: int = 1_000_000
    max_cc_rounds: int = 100

    def validate(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold: must be in (0, 1]")
        if not 1 <= self.num_perm <= 1024:
            raise ValueError("num_perm: must be in [1, 1024]")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("bands: give both bands and rows, or neither")
        if self.bands is not None and (self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm):
            raise ValueError(f"bands: bands x rows must be positive and at most num_perm ({self.num_perm})")
        for name in ("word_ngram", "char_ngram", "batch_rows", "max_cc_rounds", "max_text_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        if self.partitions < 0:
            raise ValueError("partitions: must be >= 0")
        if not 0.0 <= self.cjk_min_ratio <= 1.0:
            raise ValueError("cjk_min_ratio: must be in [0, 1]")
        if self.fp_weight < 0 or self.fn_weight < 0 or self.fp_weight + self.fn_weight == 0:
            raise ValueError("fp_weight: weights must be >= 0 and not both 0")

    def band_shape(self) -> tuple[int, int]:
        if self.bands is not None:
            return self.bands, self.rows
        return minhash.optimal_bands(self.threshold, self.num_perm, self.fp_weight, self.fn_weight)


# ---------------------------------------------------------------- per-document keys


def normalize_url(urls: pa.Array) -> pa.Array:
    """Host lower-cased without ``www.`` and default port, scheme and fragment dropped, no trailing slash."""
    if isinstance(urls, pa.ChunkedArray):
        urls = urls.combine_chunks()
    parts = pc.extract_regex(pc.utf8_trim_whitespace(pc.cast(urls, pa.string())), _URL_PATTERN)
    host = pc.utf8_lower(parts.field("host"))
    host = pc.replace_substring_regex(host, r"^www\.", "")
    port = pc.fill_null(parts.field("port"), "")
    port = pc.if_else(pc.is_in(port, pa.array(["", "80", "443"])), "", pc.binary_join_element_wise(":", port, ""))
    path = pc.replace_substring_regex(pc.fill_null(parts.field("path"), ""), r"/+$", "")
    query = pc.fill_null(parts.field("query"), "")
    key = pc.binary_join_element_wise(host, port, path, query, "")
    return pc.if_else(pc.equal(host, ""), pa.scalar(None, pa.string()), key)


def _max_bytes(texts: pa.Array | pa.ChunkedArray) -> int:
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    return max((int(pc.max(pc.binary_length(c)).as_py() or 0) for c in chunks), default=0)


def hash_strings(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """xxh3-64 of each non-null, non-empty string; returns (hashes, present mask)."""
    present = pc.fill_null(pc.greater(pc.utf8_length(values), 0), False).to_numpy(zero_copy_only=False)
    strings = values.to_pylist()
    hashes = np.fromiter(
        (xxhash.xxh3_64_intdigest(s.encode("utf-8", "surrogatepass")) if ok else 0 for s, ok in zip(strings, present)),
        dtype=np.uint64,
        count=len(strings),
    )
    return hashes, present


def node_keys(ordinals: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
    """int64 keys whose order is the keep order: (priority, input ordinal)."""
    keys = ordinals.astype(np.int64)
    if quality is not None:
        score = np.where(np.isnan(quality), 0.0, np.clip(quality, 0.0, 1.0))
        priority = np.rint((1.0 - score) * PRIORITY_LEVELS).astype(np.int64)
        keys = keys | (priority << ORDINAL_BITS)
    return keys


def shard_of(keys: np.ndarray, shard_offsets: np.ndarray) -> np.ndarray:
    return np.searchsorted(shard_offsets, keys & ORDINAL_MASK, side="right") - 1


def _write_partitioned(columns: dict[str, np.ndarray], by: np.ndarray, root: str, name: str, partitions: int) -> None:
    order = np.argsort(by, kind="stable")
    bounds = np.searchsorted(by[order], np.arange(partitions + 1))
    for q in range(partitions):
        rows = order[bounds[q] : bounds[q + 1]]
        if rows.size:
            table = pa.table({k: v[rows] for k, v in columns.items()})
            graph.write_atomic(table, storage.join(root, f"p{q}", f"{name}.parquet"))


_read_dir = graph.read_dir


# ---------------------------------------------------------------- steps (run as Ray tasks)


#: Documents per shuffle partition by default: a partition's band rows (14 x 16 bytes a document) stay
#: near 60 MB, while a small run does not pay for dozens of tiny files per step.
PARTITION_DOCS = 250_000


def default_partitions(docs: int, workers: int) -> int:
    """One partition per ``PARTITION_DOCS`` documents, at least one and at most four per worker.

    Every reduce step (url, exact, bands, components) reads each map task's file of each partition
    and writes per partition: at 50k documents, 4 partitions per worker made those steps a quarter
    of dedup's time in file operations alone. Decisions do not depend on the count.
    """
    return max(workers, min(4 * workers, -(-docs // PARTITION_DOCS)))


def _open_parquet(path: str) -> pq.ParquetFile:
    """A Parquet file to read row groups from (remote: by range requests, not downloaded whole)."""
    if not storage.is_remote(path):
        return pq.ParquetFile(path)
    fs, inner = storage.pyarrow_filesystem(path)
    return pq.ParquetFile(fs.open_input_file(inner))


def _batches(pieces: list[tuple[str, list[int]]], params: DedupParams):
    """Record batches of a map unit's pieces, in order: (shard path, its row groups)."""
    for path, row_groups in pieces:
        parquet = _open_parquet(path)
        names = set(parquet.schema_arrow.names)
        wanted = [c for c in (ID, TEXT, URL, params.lang_column, params.quality_column, params.fetch_time_column) if c in names]
        yield from parquet.iter_batches(batch_size=params.batch_rows, columns=wanted, row_groups=row_groups)


def plan_units(shards: list[str], workers: int, rows_per_task: int = 10_000) -> tuple[list[list[tuple[str, list[int]]]], list[int]]:
    """The map step's tasks: runs of consecutive row groups (across shard ends), about equal in rows.

    Why not one task per shard: the map step is most of dedup's time, and with 5 shards on 2
    workers the last one runs alone (a third of the step with one core idle). Here the count is
    a multiple of the workers, 1-4 per worker, each of at least about ``rows_per_task`` rows (a
    task costs a few dozen small files). A row group is never split. Input order is kept, so
    ordinals (and decisions) do not depend on the cut.
    """
    groups = []  # (shard, row group, rows, work: the text column's bytes, and some per row)
    for path in shards:
        metadata = _open_parquet(path).metadata
        leaves = [metadata.schema.column(j).path for j in range(metadata.num_columns)]  # Parquet's leaf columns
        text = leaves.index(TEXT) if TEXT in leaves else None
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            size = group.column(text).total_uncompressed_size if text is not None else 0
            groups.append((path, g, group.num_rows, size + 64 * group.num_rows))
    rows_total = sum(g[2] for g in groups)
    work_total = sum(g[3] for g in groups)
    per_worker = max(1, min(4, round(rows_total / max(1, workers * rows_per_task))))
    count = max(1, workers * per_worker)
    units: list[list[tuple[str, list[int]]]] = [[]]
    sizes = [0]
    done = 0
    for path, group, rows, work in groups:
        if done >= work_total * len(units) / count and units[-1]:
            units.append([])
            sizes.append(0)
        unit = units[-1]
        sizes[-1] += rows
        if unit and unit[-1][0] == path:
            unit[-1][1].append(group)
        else:
            unit.append((path, [group]))
        done += work
    return units, sizes


@contextlib.contextmanager
def _keep_freed_memory():
    """Within the block, glibc keeps freed memory for the next allocation instead of returning it.

    By default glibc gives blocks above its mmap threshold back to the kernel when freed, so every
    batch's arrays are fresh pages again, each one a page fault on first touch: on small VMs that
    was 10-15% of the map step's CPU time. ``mallopt`` raises the thresholds for the block;
    afterwards ``malloc_trim`` returns what is free and the thresholds are left where glibc's own
    adjustment tops out (32 MB mmap, 64 MB trim; setting them ends that adjustment, and 128 KB
    would make every later array of a process that goes on working, as an in-process run's
    driver does, fresh pages again). A no-op without glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, 1 << 30)
    try:
        yield
    finally:
        trim(0)
        mallopt(m_mmap_threshold, 32 << 20)
        mallopt(m_trim_threshold, 64 << 20)


def map_shard(pieces: list[tuple[str, list[int]]], index: int, ordinal_base: int, params: DedupParams, workdir: str,
              partitions: int) -> dict:
    """Keys, signatures and band keys of one map unit (row groups of one or more shards), shuffled into partition files."""
    with _keep_freed_memory():
        return _map_unit(pieces, index, ordinal_base, params, workdir, partitions)


def _map_unit(pieces: list[tuple[str, list[int]]], index: int, ordinal_base: int, params: DedupParams, workdir: str,
              partitions: int) -> dict:
    bands, rows = params.band_shape()
    keys_all, ids_all, url_h, url_k, url_t, ex_h, ex_k, band_k, band_n, sig_k, sig_v = ([] for _ in range(11))
    ordinal, skipped = ordinal_base, 0
    for batch in _batches(pieces, params):
        count = batch.num_rows
        ordinals = np.arange(ordinal, ordinal + count, dtype=np.int64)
        ordinal += count
        quality = None
        if params.keep == "quality" and params.quality_column in batch.schema.names:
            quality = pc.cast(batch[params.quality_column], pa.float64()).to_numpy(zero_copy_only=False)
            quality = np.asarray(quality, dtype=np.float64)
        elif params.keep == "quality":
            quality = np.full(count, np.nan)
        keys = node_keys(ordinals, quality)
        keys_all.append(keys)
        ids_all.append(batch[ID])
        texts = pc.fill_null(pc.cast(batch[TEXT], pa.string()), "") if TEXT in batch.schema.names else pa.array([""] * count)
        # A document has at least as many bytes as characters: count characters only when the bytes could be too many.
        if count and _max_bytes(texts) > params.max_text_chars and pc.max(pc.utf8_length(texts)).as_py() > params.max_text_chars:
            texts = pc.utf8_slice_codeunits(texts, 0, params.max_text_chars)
        if params.url and URL in batch.schema.names:
            hashes, present = hash_strings(normalize_url(batch[URL]))
            fetch = np.full(count, np.iinfo(np.int64).min, np.int64)
            if params.fetch_time_column in batch.schema.names:
                column = batch[params.fetch_time_column]
                try:
                    if not pa.types.is_timestamp(column.type):
                        column = pc.cast(column, pa.timestamp("s"))
                    seconds = pc.cast(column, pa.int64())
                    fetch = np.where(pc.is_null(seconds).to_numpy(zero_copy_only=False), fetch,
                                     pc.fill_null(seconds, 0).to_numpy(zero_copy_only=False))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    pass  # unparseable fetch times: URL groups fall back to the keep order
            url_h.append(hashes[present]), url_k.append(keys[present]), url_t.append(fetch[present])
        langs = batch[params.lang_column] if params.lang_column in batch.schema.names else None
        cjk = minhash.is_cjk(texts, langs, params.cjk_min_ratio)
        tokens = minhash.batch_tokens(texts, cjk)
        if params.exact:
            hashes, present = minhash.exact_keys(tokens)
            ex_h.append(hashes[present]), ex_k.append(keys[present])
            skipped += int(count - present.sum())
        if params.fuzzy:
            shingles = minhash.shingles_of(tokens, cjk, params.word_ngram, params.char_ngram)
            signature = minhash.signatures(shingles, params.num_perm, params.seed)
            has = np.diff(shingles.offsets) > 0
            signature, sig_keys = signature[has], keys[has]
            band_k.append(minhash.band_keys(signature, bands, rows).ravel())
            band_n.append(np.repeat(sig_keys, bands))
            if params.verify:
                sig_k.append(sig_keys)
                sig_v.append(signature)
    out = storage.join(workdir, "map", f"s{index}")
    name = f"s{index}"
    cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    docs = int(ordinal - ordinal_base)
    ids = pa.concat_arrays([c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in ids_all]) if ids_all else pa.array([], pa.string())
    graph.write_atomic(pa.table({"key": cat(keys_all, np.int64), "id": pc.cast(ids, pa.string())}), storage.join(out, "ids.parquet"))
    if url_h:
        h = cat(url_h, np.uint64)
        _write_partitioned({"h": h, "fetch": cat(url_t, np.int64), "key": cat(url_k, np.int64)}, graph.node_partition(h, partitions),
                           storage.join(workdir, "url"), name, partitions)
    if ex_h:
        h = cat(ex_h, np.uint64)
        _write_partitioned({"h": h, "key": cat(ex_k, np.int64)}, graph.node_partition(h, partitions), storage.join(workdir, "exact"), name, partitions)
    if params.fuzzy:
        h = cat(band_k, np.uint64)
        _write_partitioned({"h": h, "key": cat(band_n, np.int64)}, graph.node_partition(h, partitions), storage.join(workdir, "band"), name, partitions)
    if sig_k:
        sig_keys = cat(sig_k, np.int64)
        matrix = np.concatenate(sig_v) if sig_v else np.zeros((0, params.num_perm), np.uint32)
        order = np.argsort(sig_keys)
        width = 4 * params.num_perm
        blob = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(order), [None, pa.py_buffer(np.ascontiguousarray(matrix[order]).tobytes())])
        graph.write_atomic(pa.table({"key": sig_keys[order], "sig": blob}), storage.join(out, "sig.parquet"))
    return {"docs": docs, "no_text": skipped}


def _losers(workdir: str, steps: tuple[str, ...]) -> np.ndarray:
    """Sorted keys of every document already rejected by the given steps."""
    parts = [t["loser"].to_numpy() for step in steps if (t := _read_dir(storage.join(workdir, step))) is not None]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if sorted_set.size == 0:
        return np.zeros(values.size, bool)
    idx = np.clip(np.searchsorted(sorted_set, values), 0, sorted_set.size - 1)
    return sorted_set[idx] == values


def group_winners(h: np.ndarray, rank: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within each group of equal ``h``, the row with the smallest (rank, key) wins: (loser keys, winner keys)."""
    if h.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((keys, rank, h))
    h, keys = h[order], keys[order]
    first = np.r_[True, h[1:] != h[:-1]]
    winner = keys[np.flatnonzero(first)][np.cumsum(first) - 1]
    return keys[~first], winner[~first]


def url_partition(workdir: str, q: int) -> dict:
    table = _read_dir(storage.join(workdir, "url", f"p{q}"))
    if table is None:
        return {"losers": 0}
    fetch = table["fetch"].to_numpy()
    # Latest fetch first: rank by negated time (the min int64 sentinel stays last).
    rank = np.where(fetch == np.iinfo(np.int64).min, np.iinfo(np.int64).max, -fetch)
    loser, winner = group_winners(table["h"].to_numpy(), rank, table["key"].to_numpy())
    graph.write_atomic(pa.table({"loser": loser, "winner": winner}), storage.join(workdir, "url_out", f"p{q}.parquet"))
    return {"losers": int(loser.size)}


def exact_partition(workdir: str, q: int) -> dict:
    table = _read_dir(storage.join(workdir, "exact", f"p{q}"))
    if table is None:
        return {"losers": 0}
    keys = table["key"].to_numpy()
    alive = ~_in_sorted(keys, _losers(workdir, ("url_out",)))
    h, keys = table["h"].to_numpy()[alive], keys[alive]
    loser, winner = group_winners(h, np.zeros(h.size, np.int64), keys)
    graph.write_atomic(pa.table({"loser": loser, "winner": winner}), storage.join(workdir, "exact_out", f"p{q}.parquet"))
    return {"losers": int(loser.size)}


def band_partition(workdir: str, q: int, partitions: int, shard_offsets: np.ndarray, verify: bool) -> dict:
    """Documents sharing a band key become a star of candidate edges around the smallest key."""
    table = _read_dir(storage.join(workdir, "band", f"p{q}"))
    if table is None:
        return {"candidates": 0}
    keys = table["key"].to_numpy()
    alive = ~_in_sorted(keys, _losers(workdir, ("url_out", "exact_out")))
    h, keys = table["h"].to_numpy()[alive], keys[alive]
    order = np.lexsort((keys, h))
    h, keys = h[order], keys[order]
    first = np.r_[True, h[1:] != h[:-1]] if h.size else np.zeros(0, bool)
    centre = keys[np.flatnonzero(first)][np.cumsum(first) - 1] if h.size else keys
    src, dst = graph.unique_edges(centre[~first], keys[~first])
    if verify:
        _write_partitioned({"a": dst, "b": src}, shard_of(dst, shard_offsets), storage.join(workdir, "cand"), f"b{q}",
                           len(shard_offsets) - 1)
    else:
        graph.write_symmetric(src, dst, storage.join(workdir, "cc", "r0"), partitions, f"b{q}")
    return {"candidates": int(src.size)}


def _load_signatures(workdir: str, shard: int) -> tuple[np.ndarray, np.ndarray]:
    table = storage.read_table(storage.join(workdir, "map", f"s{shard}", "sig.parquet"))
    return table["key"].to_numpy(), _signature_matrix(table["sig"])


def _signature_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed_size_binary column of packed uint32 signatures as a (rows x num_perm) view."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = array.type.byte_width
    raw = np.frombuffer(array.buffers()[1], np.uint32, count=len(array) * width // 4, offset=array.offset * width)
    return raw.reshape(len(array), width // 4)


def verify_attach(workdir: str, shard: int, shard_offsets: np.ndarray) -> dict:
    """Hop 1: candidates whose ``a`` is in this shard get a's signature, then go to b's shard."""
    table = _read_dir(storage.join(workdir, "cand", f"p{shard}"))
    if table is None:
        return {"pairs": 0}
    a, b = graph.unique_edges(table["a"].to_numpy(), table["b"].to_numpy())
    keys, matrix = _load_signatures(workdir, shard)
    rows = np.searchsorted(keys, a)
    width = matrix.shape[1] * 4
    blob = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(a), [None, pa.py_buffer(np.ascontiguousarray(matrix[rows]).tobytes())])
    target = shard_of(b, shard_offsets)
    order = np.argsort(target, kind="stable")
    bounds = np.searchsorted(target[order], np.arange(len(shard_offsets)))
    for t in range(len(shard_offsets) - 1):
        sel = order[bounds[t] : bounds[t + 1]]
        if sel.size:
            part = pa.table({"a": a[sel], "b": b[sel], "sig": blob.take(pa.array(sel))})
            graph.write_atomic(part, storage.join(workdir, "cand2", f"p{t}", f"s{shard}.parquet"))
    return {"pairs": int(a.size)}


def verify_compare(workdir: str, shard: int, threshold: float, partitions: int) -> dict:
    """Hop 2: compare with b's signature; pairs agreeing on >= threshold of positions become edges."""
    table = _read_dir(storage.join(workdir, "cand2", f"p{shard}"))
    if table is None:
        return {"verified": 0}
    a, b = table["a"].to_numpy(), table["b"].to_numpy()
    sig_a = _signature_matrix(table["sig"])
    keys, matrix = _load_signatures(workdir, shard)
    sig_b = matrix[np.searchsorted(keys, b)]
    agreement = (sig_a == sig_b).mean(axis=1)
    keep = agreement >= threshold
    graph.write_symmetric(a[keep], b[keep], storage.join(workdir, "cc", "r0"), partitions, f"v{shard}")
    return {"verified": int(keep.sum())}


def cc_step(workdir: str, k: int, q: int, partitions: int) -> dict:
    large = k % 2 == 0
    source = storage.join(workdir, "cc", f"r{k}", f"p{q}")
    return graph.star_step(source, storage.join(workdir, "cc", f"r{k + 1}"), partitions, q, large)


def cc_labels(workdir: str, k: int, q: int) -> dict:
    nodes, labels = graph.star_labels(storage.join(workdir, "cc", f"r{k}", f"p{q}"))
    graph.write_atomic(pa.table({"node": nodes, "label": labels}), storage.join(workdir, "labels", f"p{q}.parquet"))
    return {"nodes": int(nodes.size)}


def _check_unique(workdir: str, shard_count: int, member_ids: pa.Array) -> None:
    """Decisions are applied by id: an id that also names another document would take that one with it.

    ``curate run`` makes ids unique before a global stage runs (curate.ids); this check is what makes
    dedup safe on its own: it stops, naming the id, rather than reject or merge a document by a shared id.
    """
    if not len(member_ids):
        return
    members = pc.unique(member_ids)
    hits = [t.filter(pc.is_in(t["id"], value_set=members))
            for t in (storage.read_table(storage.join(workdir, "map", f"s{s}", "ids.parquet")) for s in range(shard_count))]
    found = pa.concat_tables(hits) if hits else None
    if found is None or found.num_rows == len(member_ids):
        return
    counts = found.group_by("id").aggregate([("key", "count")]).filter(pc.field("key_count") > 1)
    if counts.num_rows:
        shared, times = counts["id"][0].as_py(), counts["key_count"][0].as_py()
        raise RuntimeError(f"dedup: id {shared!r} names {times} different documents ({counts.num_rows} such ids); "
                           "ids must be unique in a run (curate run makes them so): deciding by id would "
                           "drop or merge a document that is no duplicate")


def ids_for(workdir: str, shard: int, wanted: np.ndarray) -> pa.Table:
    table = storage.read_table(storage.join(workdir, "map", f"s{shard}", "ids.parquet"))
    return table.filter(pa.array(_in_sorted(table["key"].to_numpy(), wanted)))


# ---------------------------------------------------------------- the stage


class MinHashDedup(GlobalStage):
    """URL, exact-text and MinHash-LSH near-duplicate removal across the whole run (one winner per cluster)."""

    name = "dedup"
    Params = DedupParams
    requires = (ID, TEXT)
    outputs = tuple(DECISION_SCHEMA.field(n) for n in ("dup_cluster_id", "dup_cluster_size", "dup_of"))

    def __init__(self, params: DedupParams | None = None):
        super().__init__(params)
        self._decisions: pa.Table | None = None

    # -- global step -------------------------------------------------------

    def run(self, shards: list[str], workdir: str, *, workers: int) -> dict:
        params = self.params
        workers = max(1, int(workers))
        units, sizes = plan_units(shards, workers)
        shard_offsets = np.zeros(len(units) + 1, np.int64)
        np.cumsum(sizes, out=shard_offsets[1:])
        partitions = params.partitions or default_partitions(int(shard_offsets[-1]), workers)
        if shard_offsets[-1] > ORDINAL_MASK:
            raise ValueError(f"dedup: {shard_offsets[-1]} documents exceed the {ORDINAL_BITS}-bit ordinal")
        plan = {"shards": shards, "units": units, "sizes": sizes, "params": asdict(params), "partitions": partitions}
        _start_or_resume(workdir, plan)
        timings: dict[str, float] = {}
        runner = _TaskRunner(workdir, workers)
        try:
            summary = self._steps(runner, units, shard_offsets, workdir, partitions, timings)
        finally:
            started = time.perf_counter()
            runner.close()  # the step's worker processes end here, before the apply pass starts its own
            timings["release"] = round(time.perf_counter() - started, 3)
        summary["seconds"] = timings
        summary["peak_worker_rss_mb"] = runner.peak_rss_mb
        return summary

    def _steps(self, runner: "_TaskRunner", shards: list, shard_offsets: np.ndarray, workdir: str,
               partitions: int, timings: dict[str, float]) -> dict:
        """The steps in order; ``timings`` gets each step's wall seconds (a step run several times adds up)."""
        params = self.params
        bands, rows = params.band_shape()

        def step(name: str, fn, args_list) -> list[dict]:
            started = time.perf_counter()
            results = runner.map(name, fn, args_list)
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - started, 3)
            return results

        mapped = step("map", map_shard, [(s, i, int(shard_offsets[i]), params, workdir, partitions) for i, s in enumerate(shards)])
        summary = {
            "docs": sum(r["docs"] for r in mapped),
            "bands": bands,
            "rows": rows,
            "partitions": partitions,
        }
        if params.url:
            summary[URL_DUPLICATE] = sum(r["losers"] for r in step("url", url_partition, [(workdir, q) for q in range(partitions)]))
        if params.exact:
            summary[EXACT_DUPLICATE] = sum(r["losers"] for r in step("exact", exact_partition, [(workdir, q) for q in range(partitions)]))
        if params.fuzzy:
            band_args = [(workdir, q, partitions, shard_offsets, params.verify) for q in range(partitions)]
            summary["candidate_pairs"] = sum(r["candidates"] for r in step("bands", band_partition, band_args))
            if params.verify:
                step("verify1", verify_attach, [(workdir, i, shard_offsets) for i in range(len(shards))])
                verified = step("verify2", verify_compare, [(workdir, i, params.threshold, partitions) for i in range(len(shards))])
                summary["verified_pairs"] = sum(r["verified"] for r in verified)
            summary["cc_rounds"] = self._components(step, workdir, partitions)
        summary.update(step("final", finalize, [(workdir, len(shards))])[0])
        return summary

    def _components(self, step, workdir: str, partitions: int) -> int:
        """Alternate large-star and small-star until a pair of rounds leaves the edges unchanged."""
        previous = None
        k = 0
        while True:
            if k >= self.params.max_cc_rounds:
                raise RuntimeError(f"dedup: connected components did not converge in {k} rounds (max_cc_rounds)")
            results = step("cc", cc_step, [(workdir, k, q, partitions) for q in range(partitions)])
            fingerprint = (sum(r["edges"] for r in results), sum(r["checksum"] for r in results) % (1 << 64))
            if k % 2 == 0:
                if fingerprint[0] == 0 or fingerprint == previous:
                    break
                previous = fingerprint
            k += 1
        if fingerprint[0]:
            step("labels", cc_labels, [(workdir, k, q) for q in range(partitions)])
        return k

    # -- per-document pass ---------------------------------------------------

    def load_decisions(self, workdir: str) -> None:
        # one contiguous chunk per column, combined once here rather than on every batch
        self._decisions = storage.read_table(storage.join(workdir, "decisions.parquet"), schema=DECISION_SCHEMA).combine_chunks()

    def process(self, table: pa.Table) -> StageResult:
        if self._decisions is None:
            raise RuntimeError("dedup: load_decisions(workdir) must run before process()")
        decisions = self._decisions
        index = pc.index_in(table[ID], value_set=decisions[ID].chunk(0))
        if isinstance(index, pa.ChunkedArray):
            index = index.combine_chunks()
        found = lambda column: decisions[column].take(index)  # noqa: E731
        ids = pc.cast(table[ID], pa.string())
        table = table.append_column("dup_cluster_id", pc.coalesce(found("dup_cluster_id"), ids))
        table = table.append_column("dup_cluster_size", pc.coalesce(found("dup_cluster_size"), pa.scalar(1, pa.int64())))
        table = table.append_column("dup_of", found("dup_of"))
        return StageResult(table, found("reason"))


# ---------------------------------------------------------------- final resolution


def finalize(workdir: str, shard_count: int) -> dict:
    """Every duplicate -> its cluster's kept document; writes decisions.parquet keyed by id."""
    def pairs(step: str, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        table = _read_dir(storage.join(workdir, step))
        if table is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        order = np.argsort(table[a].to_numpy())
        return table[a].to_numpy()[order], table[b].to_numpy()[order]

    url_loser, url_winner = pairs("url_out", "loser", "winner")
    exact_loser, exact_winner = pairs("exact_out", "loser", "winner")
    nodes, labels = pairs("labels", "node", "label")

    def lookup(values: np.ndarray, keys: np.ndarray, targets: np.ndarray) -> np.ndarray:
        hit = _in_sorted(values, keys)
        out = values.copy()
        out[hit] = targets[np.searchsorted(keys, values[hit])]
        return out

    root_of = lambda v: lookup(v, nodes, labels)  # noqa: E731
    members = np.concatenate([url_loser, exact_loser, nodes])
    roots = np.concatenate([
        root_of(lookup(url_winner, exact_loser, exact_winner)),
        root_of(exact_winner),
        labels,
    ])
    reasons = np.concatenate([
        np.full(url_loser.size, 1, np.int8),
        np.full(exact_loser.size, 2, np.int8),
        np.where(nodes == labels, 0, 3).astype(np.int8),
    ])
    # Kept documents of clusters that came only from URL/exact groups are members too.
    extra = np.setdiff1d(roots, members)
    members = np.concatenate([members, extra])
    roots = np.concatenate([roots, extra])
    reasons = np.concatenate([reasons, np.zeros(extra.size, np.int8)])
    cluster_roots, sizes = np.unique(roots, return_counts=True)
    size_of = sizes[np.searchsorted(cluster_roots, roots)]

    wanted = np.unique(members)
    id_tables = [ids_for(workdir, s, wanted) for s in range(shard_count)]
    id_table = pa.concat_tables(id_tables) if id_tables else pa.table({"key": np.zeros(0, np.int64), "id": pa.array([], pa.string())})
    id_keys = id_table["key"].to_numpy()
    order = np.argsort(id_keys)
    id_keys, id_values = id_keys[order], id_table["id"].combine_chunks().take(pa.array(order))
    if id_keys.size != wanted.size:
        raise RuntimeError(f"dedup: {wanted.size - id_keys.size} duplicate documents have no id in the map output")
    _check_unique(workdir, shard_count, id_values)
    id_at = lambda keys: id_values.take(pa.array(np.searchsorted(id_keys, keys)))  # noqa: E731
    reason_names = pa.array(REASON_CODES, pa.string())
    decisions = pa.table(
        {
            ID: id_at(members),
            "reason": reason_names.take(pa.array(reasons)),
            "dup_of": pc.if_else(pa.array(reasons > 0), id_at(roots), pa.scalar(None, pa.string())),
            "dup_cluster_id": id_at(roots),
            "dup_cluster_size": pa.array(size_of, pa.int64()),
        },
        schema=DECISION_SCHEMA,
    )
    graph.write_atomic(decisions, storage.join(workdir, "decisions.parquet"))
    counts = np.bincount(reasons, minlength=4)
    return {
        "clusters": int(cluster_roots.size),
        "largest_cluster": int(sizes.max(initial=0)),
        NEAR_DUPLICATE: int(counts[3]),
        "rejected": int(counts[1:].sum()),
    }


# ---------------------------------------------------------------- task plumbing


def _start_or_resume(workdir: str, plan: dict) -> None:
    """Reuse ``workdir`` if it holds the same plan (resume), else start it afresh."""
    path = storage.join(workdir, "plan.json")
    text = json.dumps(plan, sort_keys=True, default=str)
    try:
        if storage.read_bytes(path).decode("utf-8") == text:
            return
    except FileNotFoundError:
        pass
    for entry in storage.listdir(workdir):
        storage.rmtree(storage.join(workdir, entry))
    storage.makedirs(workdir)
    storage.write_bytes(path, text.encode("utf-8"))


def _task(fn, marker: str, args: tuple) -> dict:
    """One task: its result is also left as ``marker`` (JSON), which is what makes it finished."""
    import resource  # noqa: PLC0415

    result = fn(*args)
    result["_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    storage.write_bytes(marker, json.dumps(result).encode("utf-8"))
    return result


class _TaskRunner:
    """Runs one step's tasks, at most ``workers`` at a time, skipping those whose marker exists.

    The tasks go through ``curate.pool.step_runner``: actors of this stage's own on Ray (ended by
    ``close``, so their memory is free before the apply pass starts its workers), or this process
    when no Ray runs (small inputs, ``--workers 1``). Markers live in ``workdir`` (a folder or an
    object-store prefix), listed once per step rather than probed per task.
    """

    def __init__(self, workdir: str, workers: int):
        from curate.pool import step_runner  # noqa: PLC0415

        self.workdir, self.workers = workdir, max(1, int(workers))
        self.steps = step_runner(self.workers)
        self.calls: dict[str, int] = {}
        self.peak_rss_mb = 0

    def map(self, name: str, fn, args_list: list[tuple]) -> list[dict]:
        # A step that runs several times (cc rounds) numbers its markers by call.
        call = self.calls.get(name, 0)
        self.calls[name] = call + 1
        done_dir = storage.join(self.workdir, "_done")
        finished = set(storage.listdir(done_dir))
        results: list[dict | None] = [None] * len(args_list)
        pending, queue = {}, list(enumerate(args_list))
        while queue or pending:
            while queue and len(pending) < self.workers:
                i, args = queue.pop(0)
                marker = storage.join(done_dir, f"{name}{call}-{i}.json")
                if storage.basename(marker) in finished:
                    results[i] = storage.read_json(marker)
                    continue
                pending[self.steps.submit(_task, fn, marker, args)] = i
            if pending:
                for handle in self.steps.wait(list(pending)):
                    results[pending.pop(handle)] = self.steps.get(handle)
        for result in results:
            self.peak_rss_mb = max(self.peak_rss_mb, result.pop("_peak_rss_mb", 0))  # type: ignore[union-attr]
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.steps.close()

    def __enter__(self) -> "_TaskRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ExactDedup(MinHashDedup):
    """URL and exact-text dedup only (``dedup`` with ``fuzzy: false``), for runs that want no MinHash."""

    name = "exact_dedup"

    @dataclass
    class Params(DedupParams):
        fuzzy: bool = False
