"""Which documents a component holds: token folders read, curated signals joined by id, filters applied.

A component's documents come in a fixed order (its token folders in the order
given, then sources, then shards by name, then documents in shard order), so the
same inputs always give the same rows; the shuffles are applied later, per epoch.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.mixtures.config import DOC_FIELDS, ComponentSpec, Condition, MixtureConfig
from curate.params import ConfigError
from curate.tokenizers.corpus import unit_hash
from curate.tokenizers.tokenize import stats_table


HASH_CHUNK = 200_000


class MixtureInputError(ValueError):
    """An input that exists but cannot be used as it is (a shard shorter than its index): exit code 1."""


@dataclass
class TokenFolder:
    """One `curate tokenize` output: its meta.json and its committed shards per source."""

    path: str
    meta: dict
    shards: dict[str, list[str]]
    """source -> absolute shard base paths (without .bin), sorted."""

    @classmethod
    def open(cls, path: str, *, file: str | None, key: str) -> "TokenFolder":
        from curate.remote import is_remote

        if is_remote(path):  # training memory-maps the shards: they must be on a local disk
            from curate.tokenizers.tokenize import bring_local_hint

            raise ConfigError(f"{path} is in an object store: {bring_local_hint(path)}", file=file, key=key)
        meta_path = os.path.join(path, "meta.json")
        if not os.path.isdir(path):
            raise ConfigError(f"no token folder at {path} (make one with `curate tokenize`)", file=file, key=key)
        if not os.path.isfile(meta_path) or not os.path.isdir(os.path.join(path, "done")):
            raise ConfigError(f"{path} is not a `curate tokenize` output (no meta.json or done/)", file=file, key=key)
        with open(meta_path) as f:
            meta = json.load(f)
        stats = stats_table(path)
        shards: dict[str, list[str]] = {}
        for source, shard in sorted(set(zip(stats["source"].to_pylist(), stats["shard"].to_pylist()))):
            shards.setdefault(source, []).append(os.path.join(path, shard)[: -len(".bin")])
        return cls(path, meta, shards)


class ShardRegistry:
    """Every token shard the mixture reads, numbered in the order first used."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.dtypes: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, bin_path: str, dtype: str) -> int:
        if bin_path not in self._index:
            self._index[bin_path] = len(self.paths)
            self.paths.append(bin_path)
            self.dtypes.append(dtype)
        return self._index[bin_path]


@dataclass
class Selection:
    """A component's documents: where each lies and how long it is, training and validation together."""

    ids: pa.ChunkedArray
    shard: np.ndarray
    """Index into the ShardRegistry (int64)."""
    start: np.ndarray
    """First token's offset in the shard."""
    length: np.ndarray
    """Tokens the document takes in the packed stream: its tokens plus an EOS if the shard has none."""
    real: np.ndarray
    """Tokens stored in the shard (``length`` minus an added EOS)."""
    val: np.ndarray
    """True for validation documents."""
    missing_signals: int = 0
    """Documents that a signal condition dropped because the curated run(s) had no row with their id."""

    def counts(self) -> dict:
        train, val = ~self.val, self.val
        return {"documents": int(train.sum()), "tokens_available": int(self.length[train].sum()),
                "val_documents": int(val.sum()), "val_tokens": int(self.length[val].sum())}


class Signals:
    """Columns of the curated run(s) named in the mixture file, looked up by document id."""

    def __init__(self, runs: list[str], file: str | None):
        self.runs, self.file = runs, file
        self.files: list[str] = []
        for i, run in enumerate(runs):
            found = sorted(glob.glob(os.path.join(run, "docs", "*.parquet")))
            if not found:
                raise ConfigError(f"no curated run at {run} (expected {run}/docs/*.parquet from `curate run`)",
                                  file=file, key=f"curated[{i}]")
            self.files += found
        self.columns = set()
        for path in self.files:
            self.columns |= set(pq.read_schema(path).names)
        self._table: pa.Table | None = None
        self._loaded: set[str] = set()

    def load(self, columns: set[str]) -> None:
        """Read ``id`` and ``columns`` once (DuckDB: shards whose schemas differ are unioned by name)."""
        import duckdb

        cols = sorted(columns)
        select = ", ".join(['"id"'] + [f'"{c}"' for c in cols])
        files = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in self.files) + "]"
        self._table = duckdb.sql(f"SELECT {select} FROM read_parquet({files}, union_by_name = true)").arrow()
        if isinstance(self._table, pa.RecordBatchReader):
            self._table = self._table.read_all()
        self._loaded = set(cols)

    def lookup(self, ids: pa.ChunkedArray) -> tuple[pa.Table, np.ndarray]:
        """The signal rows of ``ids`` (nulls where an id is not in the curated runs) and which were found."""
        assert self._table is not None
        position = pc.index_in(ids, value_set=self._table["id"].combine_chunks())
        found = position.is_valid().to_numpy(zero_copy_only=False)
        return self._table.take(position), found


def open_folders(config: MixtureConfig) -> dict[str, TokenFolder]:
    """Every token folder the components name, checked to come from one tokenizer."""
    folders: dict[str, TokenFolder] = {}
    for spec in config.components:
        for i, path in enumerate(spec.paths):
            if path not in folders:
                folders[path] = TokenFolder.open(path, file=config.file, key=f"{spec.key}.paths[{i}]")
    first = next(iter(folders.values()))
    for path, folder in folders.items():
        if folder.meta.get("tokenizer_sha256") != first.meta.get("tokenizer_sha256"):
            key = next(f"{s.key}.paths[{s.paths.index(path)}]" for s in config.components if path in s.paths)
            raise ConfigError(
                f"{path} was tokenized with another tokenizer than {first.path} (tokenizer_sha256 "
                f"{str(folder.meta.get('tokenizer_sha256'))[:12]}… vs "
                f"{str(first.meta.get('tokenizer_sha256'))[:12]}…): "
                "ids would mean different pieces", file=config.file, key=key)
    if int(first.meta.get("eos_id", -1)) < 0:
        raise ConfigError(f"{first.path}: its tokenizer has no EOS id, which a mixture needs between documents",
                          file=config.file, key=f"{config.components[0].key}.paths[0]")
    return folders


def _condition_mask(column: pa.ChunkedArray | pa.Array, cond: Condition, file: str | None, key: str) -> np.ndarray:
    """Non-quantile part of a condition as a boolean array (null never matches)."""
    mask = pa.array(np.ones(len(column), dtype=bool))
    try:
        if cond.values is not None:
            mask = pc.and_(mask, pc.is_in(column, value_set=pa.array(cond.values).cast(column.type)))
        if cond.min is not None:
            mask = pc.and_(mask, pc.greater_equal(column, pa.scalar(cond.min)))
        if cond.max is not None:
            mask = pc.and_(mask, pc.less_equal(column, pa.scalar(cond.max)))
        if cond.quantile is not None:
            mask = pc.and_(mask, pc.is_valid(column))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise ConfigError(f"cannot compare column {cond.column!r} of type {column.type} this way: "
                          f"{str(err).splitlines()[0]}", file=file, key=key) from None
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _quantile_mask(values: np.ndarray, among: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Documents whose rank among ``among`` (share with a strictly smaller value) is in [lo, hi).

    Ties share a rank, so quantile ranges that tile [0, 1] split the documents into
    disjoint buckets whatever the ties.
    """
    ranked = np.sort(values[among])
    rank = np.searchsorted(ranked, values, side="left") / max(len(ranked), 1)
    return among & (rank >= lo) & (rank < hi)


def select_documents(spec: ComponentSpec, folders: dict[str, TokenFolder], signals: Signals | None,
                     registry: ShardRegistry, config: MixtureConfig) -> Selection:
    """Read the component's documents, apply its selection and its validation hold-out."""
    file = config.file
    tables = []
    for i, path in enumerate(spec.paths):
        folder = folders[path]
        dtype = folder.meta["dtype"]
        for source in spec.sources:
            for base in folder.shards.get(source, []):
                table = pq.read_table(base + ".docs.parquet", columns=["id", "lang", "offset", "tokens"])
                index = registry.add(base + ".bin", dtype)
                tables.append(table.append_column("shard", pa.array(np.full(table.num_rows, index, np.int64))))
    present = {s for path in spec.paths for s in folders[path].shards}
    for source in spec.sources:
        if source not in present:
            raise ConfigError(f"no source {source!r} in {', '.join(spec.paths)} (sources: "
                              f"{', '.join(sorted(present)) or 'none'})", file=file, key=f"{spec.key}.source")
    docs = pa.concat_tables(tables).combine_chunks() if tables else None
    if docs is None or docs.num_rows == 0:
        raise ConfigError(f"source {', '.join(spec.sources)} has no documents in {', '.join(spec.paths)}",
                          file=file, key=f"{spec.key}.source")
    shard = docs["shard"].to_numpy()
    start = docs["offset"].to_numpy().astype(np.int64)
    real = docs["tokens"].to_numpy().astype(np.int64)
    eos_id = int(next(iter(folders.values())).meta["eos_id"])
    ends_with_eos = _ends_with_eos(registry, shard, start, real, eos_id)
    # a document of nothing but its EOS (empty text) adds no training signal: it is left out
    keep = (real - ends_with_eos) > 0
    if spec.lang is not None:
        keep &= np.asarray(pc.fill_null(pc.is_in(docs["lang"], value_set=pa.array(spec.lang)), False)
                           .to_numpy(zero_copy_only=False), dtype=bool)
    missing = 0
    if spec.where:
        columns: dict[str, pa.ChunkedArray] = {name: docs[name] for name in DOC_FIELDS}
        curated_cols = [c.column for c in spec.where if c.column not in DOC_FIELDS]
        if curated_cols:
            if signals is None:
                raise ConfigError(f"column {curated_cols[0]!r} is not a token-folder field ({', '.join(DOC_FIELDS)}): "
                                  "name the curated run that has it with `curated: [OUT]`", file=file,
                                  key=f"{spec.key}.where.{curated_cols[0]}")
            for name in curated_cols:
                if name not in signals.columns:
                    raise ConfigError(f"no column {name!r} in the curated run(s) (columns: "
                                      f"{', '.join(sorted(signals.columns))})", file=file,
                                      key=f"{spec.key}.where.{name}")
            joined, found = signals.lookup(docs["id"])
            for name in curated_cols:
                columns[name] = joined[name]
            missing = int((keep & ~found).sum())
        plain = keep.copy()
        for cond in spec.where:
            plain &= _condition_mask(columns[cond.column], cond, file, f"{spec.key}.where.{cond.column}")
        keep = plain.copy()
        for cond in spec.where:
            if cond.quantile is not None:
                values = np.asarray(pc.cast(pc.fill_null(columns[cond.column], 0), pa.float64(), safe=False)
                                    .to_numpy(zero_copy_only=False), dtype=np.float64)
                keep &= _quantile_mask(values, plain, *cond.quantile)
    if not keep.any():
        what = [f"source {', '.join(spec.sources)}"]
        if spec.lang is not None:
            what.append(f"lang {', '.join(spec.lang)}")
        if spec.where:
            what.append("where " + ", ".join(c.column for c in spec.where))
        raise ConfigError(f"no document matches this selection ({'; '.join(what)})" +
                          (f"; {missing} documents have no row in the curated run(s)" if missing else ""),
                          file=file, key=spec.key)
    index = np.flatnonzero(keep)
    ids = docs["id"].take(pa.array(index))
    val = np.zeros(len(index), dtype=bool)
    if spec.validation > 0:
        for first in range(0, len(index), HASH_CHUNK):  # in chunks: Python strings for 10M ids would be GBs
            part = ids.slice(first, HASH_CHUNK)
            val[first:first + len(part)] = unit_hash(part, config.validation_seed) < spec.validation
    return Selection(ids=ids, shard=shard[index], start=start[index],
                     length=real[index] + (~ends_with_eos[index]), real=real[index], val=val,
                     missing_signals=missing)


#: Documents per shard whose last token is read to tell whether the shard stores an EOS after each document.
EOS_PROBES = 64


def _ends_with_eos(registry: ShardRegistry, shard: np.ndarray, start: np.ndarray, real: np.ndarray,
                   eos_id: int) -> np.ndarray:
    """Whether each document's last stored token is the EOS, decided per shard.

    `curate tokenize` writes an EOS after every document of a shard, or (``--no-eos``)
    after none, and text never encodes to the EOS id. So a few documents spread over the
    shard tell for all of them, and building never reads the token files through (a 20 GB
    corpus would otherwise be read from disk to check one token per document). A shard
    whose probes disagree is damaged and refused.
    """
    out = np.zeros(len(shard), dtype=bool)
    for index in np.unique(shard):
        rows = np.flatnonzero(shard == index)
        path = registry.paths[index]
        dtype = np.dtype(registry.dtypes[index])
        size = os.path.getsize(path) // dtype.itemsize
        ends = start[rows] + real[rows]
        if len(rows) and int(ends.max()) > size:
            raise MixtureInputError(f"{path}: holds {size} tokens but its .docs.parquet indexes up to {int(ends.max())}"
                                    " (a damaged shard: rerun `curate tokenize` into a fresh folder)")
        nonempty = rows[real[rows] > 0]
        if not len(nonempty):
            continue
        probes = nonempty[np.unique(np.linspace(0, len(nonempty) - 1, min(EOS_PROBES, len(nonempty))).astype(np.int64))]
        tokens = np.memmap(path, dtype=dtype, mode="r")
        last = tokens[start[probes] + real[probes] - 1] == eos_id
        del tokens
        if last.all():
            out[nonempty] = True
        elif last.any():
            raise MixtureInputError(f"{path}: some documents end with the EOS id {eos_id} and some do not (a damaged "
                                    "shard: rerun `curate tokenize` into a fresh folder)")
    return out
