"""Build a mixture: documents per component, the token targets, the sample order, the index files.

Layout of ``MIX`` (every array is a ``.npy`` file; ``np.load(path, mmap_mode="r")`` reads it)::

    mixture.json                 config, fingerprint, tokenizer, the table, shards, inputs (see docs/mixture.md)
    mixture.parquet              the table, one row per component (DuckDB, `curate sql`)
    docs/c<i>.npy                int64 (documents, 4): shard, start, length, stored, one row per document
                                 of component i (training and validation); length counts the EOS,
                                 stored is how many tokens the shard holds (length - 1 if the EOS is added)
    documents/c<i>.parquet       id, split, tokens, shard, start: which documents are in, for SQL
    train/index.npy              int64 (samples, 2): component, sample within that component
    train/c<i>.order.npy         int64: rows of docs/c<i>.npy, epoch after epoch, each epoch a seeded shuffle
    train/c<i>.samples.npy       int64 (samples of i, 2): position in order, offset in that document
    val/index.npy, val/c<i>.order.npy, val/c<i>.samples.npy   the same for the validation documents
                                 (components interleaved in proportion to their validation samples)

Sample k of component i is the ``seq_len + 1`` tokens of the component's stream
(its documents in ``order``, packed back to back, EOS after each) that start at
token ``k * seq_len``: consecutive samples share one token, as in Megatron's GPTDataset.

The index is written under ``MIX/.building`` and moved into place, ``mixture.json``
last: a folder with a ``mixture.json`` is a whole mixture. Nothing in it depends on
the clock, so the same config over the same inputs gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.mixtures.allocate import (BudgetError, apportion, blend, cap_targets, temperature_weights,
                                      within_component)
from curate.mixtures.config import DOC_FIELDS, MixtureConfig
from curate.mixtures.documents import ShardRegistry, Selection, Signals, open_folders, select_documents
from curate.params import ConfigError

FORMAT_VERSION = 1
TABLE_COLUMNS = ("component", "sources", "documents", "tokens_available", "weight_asked", "weight_realized",
                 "tokens_drawn", "epochs", "max_epochs", "capped", "val_documents", "val_tokens", "train_samples",
                 "val_samples")
PARTS = ("docs", "documents", "train", "val")


@dataclass
class Plan:
    """Everything decided before any index file is written (``curate mix --dry-run`` stops here)."""

    config: MixtureConfig
    folders: dict
    registry: ShardRegistry
    selections: list[Selection]
    weights_asked: np.ndarray
    """As written (before normalizing), or from the temperature."""
    weights_kind: str
    targets: np.ndarray
    capped: np.ndarray
    samples: int
    order: np.ndarray
    """Component of every training sample."""
    counts: np.ndarray
    val_samples: np.ndarray
    seconds: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        cfg = self.config
        out = []
        for i, (spec, sel) in enumerate(zip(cfg.components, self.selections)):
            c = sel.counts()
            drawn = int(self.counts[i]) * cfg.seq_len
            out.append({
                "component": spec.name, "sources": ",".join(spec.sources), "documents": c["documents"],
                "tokens_available": c["tokens_available"], "weight_asked": float(self.weights_asked[i]),
                "weight_realized": float(self.counts[i] / self.samples), "tokens_drawn": drawn,
                "epochs": drawn / c["tokens_available"] if c["tokens_available"] else 0.0,
                "max_epochs": float(spec.max_epochs), "capped": bool(self.capped[i]),
                "val_documents": c["val_documents"], "val_tokens": c["val_tokens"],
                "train_samples": int(self.counts[i]), "val_samples": int(self.val_samples[i])})
        return out


def _timed(seconds: dict, name: str):
    class _Timer:
        def __enter__(self):
            self.start = time.perf_counter()

        def __exit__(self, *exc):
            seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - self.start, 3)

    return _Timer()


def plan_mixture(config: MixtureConfig) -> Plan:
    """Read the documents, apply the selections, weights and caps, and decide the sample order."""
    seconds: dict = {}
    with _timed(seconds, "documents"):
        folders = open_folders(config)
        curated_needed = {c.column for spec in config.components for c in spec.where if c.column not in DOC_FIELDS}
        signals = None
        if config.curated:
            signals = Signals(config.curated, config.file)
            present = curated_needed & signals.columns
            if present:
                signals.load(present)
        registry = ShardRegistry()
        selections = [select_documents(spec, folders, signals, registry, config) for spec in config.components]
        hold_out_everywhere(config, selections)
    available = np.array([s.counts()["tokens_available"] for s in selections], dtype=np.float64)
    for spec, sel, tokens in zip(config.components, selections, available):
        if tokens == 0:
            raise ConfigError(f"every one of its {len(sel.val)} documents is held out for validation: lower "
                              "`validation` or widen the selection", file=config.file, key=f"{spec.key}.validation")
    if config.temperature is not None:
        weights, kind = temperature_weights(available, config.temperature), "temperature"
        asked = weights
    else:
        given = np.array([spec.weight for spec in config.components], dtype=np.float64)
        kind = "given" if abs(given.sum() - 1) <= 1e-6 else "normalized"
        weights, asked = given / given.sum(), given
    samples = math.ceil(config.tokens / config.seq_len)
    caps = np.floor(np.array([spec.max_epochs for spec in config.components]) * available / config.seq_len)
    try:
        targets, capped = cap_targets(weights, float(samples), caps)
    except BudgetError:
        raise ConfigError(f"the budget of {config.tokens:,} tokens ({samples:,} samples of {config.seq_len}) is more "
                          f"than every component can give under its max_epochs ({int(caps.sum()) * config.seq_len:,} "
                          "tokens in all): raise max_epochs, add data, or lower the budget", file=config.file,
                          key="tokens") from None
    counts = apportion(targets, samples, caps)
    with _timed(seconds, "blend"):
        order = blend(counts)
    val_samples = np.array([max(0, (s.counts()["val_tokens"] - 1) // config.seq_len) for s in selections],
                           dtype=np.int64)
    return Plan(config, folders, registry, selections, asked, kind, targets, capped, samples, order, counts,
                val_samples, seconds)


def hold_out_everywhere(config: MixtureConfig, selections: list[Selection]) -> None:
    """A document held out by one component is held out by every component that selects it.

    Components may overlap (``web`` and ``web-zh-top``), and their ``validation`` shares
    may differ: without this, a document could be validation in one and training in another.
    """
    seen: set = set()
    overlap = False
    for spec in config.components:
        pairs = {(path, source) for path in spec.paths for source in spec.sources}
        overlap |= bool(pairs & seen)
        seen |= pairs
    if not overlap:
        return
    held = pa.chunked_array([sel.ids.filter(pa.array(sel.val)) for sel in selections], type=pa.string())
    if len(held) == 0:
        return
    held = held.combine_chunks()
    for sel in selections:
        sel.val |= np.asarray(pc.is_in(sel.ids, value_set=held).to_numpy(zero_copy_only=False), dtype=bool)


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def stream_index(rows: np.ndarray, lengths: np.ndarray, samples: int, seq_len: int,
                 rng_for_epoch) -> tuple[np.ndarray, np.ndarray]:
    """The document order and each sample's start for ``samples`` samples of one component.

    ``rows`` are the documents (rows of the component's docs table) and ``lengths`` their
    lengths with EOS. Epoch e is ``rows`` shuffled by ``rng_for_epoch(e)``; epochs follow
    one another, so a document repeats only in a later epoch. Vectorized: one cumulative
    sum over the order and one binary search for all sample starts.
    """
    if samples == 0:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
    total = int(lengths.sum())
    last_token = samples * seq_len  # the last token of the last sample, counted from 0
    epochs = last_token // total + 1
    order = np.empty(epochs * len(rows), dtype=np.int64)
    for e in range(epochs):
        order[e * len(rows):(e + 1) * len(rows)] = rows[rng_for_epoch(e).permutation(len(rows))]
    lengths_by_row = np.zeros(int(rows.max()) + 1, dtype=np.int64)
    lengths_by_row[rows] = lengths
    ends = np.cumsum(lengths_by_row[order])
    del lengths_by_row
    keep = int(np.searchsorted(ends, last_token, side="right")) + 1
    order, ends = order[:keep].copy(), ends[:keep]
    index = np.empty((samples, 2), dtype=np.int64)
    starts = np.arange(0, samples * seq_len, seq_len, dtype=np.int64)
    position = index[:, 0]
    position[:] = np.searchsorted(ends, starts, side="right")
    begins = ends[np.maximum(position - 1, 0)]
    begins[position == 0] = 0
    index[:, 1] = starts - begins
    return order, index


def input_files(plan: Plan) -> list[str]:
    """Every file the index depends on: its size and modification time go into the fingerprint."""
    files = [os.path.join(path, "meta.json") for path in plan.folders]
    for path in plan.registry.paths:
        files += [path, path[: -len(".bin")] + ".docs.parquet"]
    config = plan.config
    if config.curated and any(c.column not in DOC_FIELDS for s in config.components for c in s.where):
        files += Signals(config.curated, config.file).files
    return files


def file_stats(paths: list[str]) -> list[dict]:
    out = []
    for path in paths:
        st = os.stat(path)
        out.append({"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def inputs_fingerprint(stats: list[dict]) -> str:
    return hashlib.sha256(json.dumps(stats, sort_keys=True).encode()).hexdigest()


def mixture_meta(plan: Plan) -> dict:
    config = plan.config
    meta = next(iter(plan.folders.values())).meta
    inputs = file_stats(input_files(plan))
    config_fp, inputs_fp = config.fingerprint(), inputs_fingerprint(inputs)
    fingerprint = hashlib.sha256(f"{FORMAT_VERSION}:{config_fp}:{inputs_fp}".encode()).hexdigest()[:16]
    components = []
    for i, row in enumerate(plan.rows()):
        spec = config.components[i]
        components.append({"name": row["component"], "index": i, **row,
                           "selection": {"sources": spec.sources, "lang": spec.lang, "paths": spec.paths,
                                         "where": [{k: v for k, v in vars(c).items() if v is not None}
                                                   for c in spec.where]},
                           "missing_signals": plan.selections[i].missing_signals})
    return {
        "format_version": FORMAT_VERSION, "fingerprint": fingerprint, "config_fingerprint": config_fp[:16],
        "inputs_fingerprint": inputs_fp[:16], "file": config.file, "seq_len": config.seq_len, "seed": config.seed,
        "tokens": config.tokens, "tokens_drawn": int(plan.samples) * config.seq_len,
        "train_samples": int(plan.samples), "val_samples": int(plan.val_samples.sum()),
        "weights": plan.weights_kind, "temperature": config.temperature,
        "validation_seed": config.validation_seed,
        "tokenizer": meta.get("tokenizer"), "tokenizer_sha256": meta.get("tokenizer_sha256"),
        "vocab_size": meta.get("vocab_size"), "eos_id": meta.get("eos_id"), "bos_id": meta.get("bos_id"),
        "dtype": meta.get("dtype"), "components": components,
        "shards": [{"path": p, "dtype": d} for p, d in zip(plan.registry.paths, plan.registry.dtypes)],
        "inputs": inputs, "config": config.to_dict(),
    }


def write_index(plan: Plan, folder: str) -> None:
    """Write every index file of ``plan`` into ``folder`` (vectorized numpy, one component at a time)."""
    config = plan.config
    for part in PARTS:
        os.makedirs(os.path.join(folder, part), exist_ok=True)
    for i, (spec, sel) in enumerate(zip(config.components, plan.selections)):
        key = _name_key(spec.name)
        docs = np.stack([sel.shard, sel.start, sel.length, sel.real], axis=1).astype(np.int64)
        np.save(os.path.join(folder, "docs", f"c{i}.npy"), docs)
        split = pa.array(np.where(sel.val, "val", "train"))
        pq.write_table(pa.table({"id": sel.ids, "split": split, "tokens": pa.array(sel.length),
                                 "shard": pa.array(sel.shard), "start": pa.array(sel.start)}),
                       os.path.join(folder, "documents", f"c{i}.parquet"))
        train_rows = np.flatnonzero(~sel.val)
        order, samples = stream_index(train_rows, sel.length[train_rows], int(plan.counts[i]), config.seq_len,
                                      lambda e: np.random.default_rng([config.seed, key, e]))
        np.save(os.path.join(folder, "train", f"c{i}.order.npy"), order)
        np.save(os.path.join(folder, "train", f"c{i}.samples.npy"), samples)
        val_rows = np.flatnonzero(sel.val)
        n_val = int(plan.val_samples[i])
        order, samples = stream_index(val_rows, sel.length[val_rows], n_val, config.seq_len,
                                      lambda e: np.random.default_rng([config.validation_seed, key, 1 << 32]))
        np.save(os.path.join(folder, "val", f"c{i}.order.npy"), order)
        np.save(os.path.join(folder, "val", f"c{i}.samples.npy"), samples)
    train = np.empty((len(plan.order), 2), dtype=np.int64)
    train[:, 0] = plan.order
    train[:, 1] = within_component(plan.order, len(plan.selections))
    np.save(os.path.join(folder, "train", "index.npy"), train)
    del train
    # validation samples interleaved by the same greedy rule, in proportion to each component's count: any
    # prefix (a trainer that evaluates the first n) is a proportional mix, and every sample comes once
    val_order = blend(plan.val_samples)
    val = np.empty((len(val_order), 2), dtype=np.int64)
    val[:, 0] = val_order
    val[:, 1] = within_component(val_order, len(plan.selections))
    np.save(os.path.join(folder, "val", "index.npy"), val)
    table = pa.Table.from_pylist([{k: row[k] for k in TABLE_COLUMNS} for row in plan.rows()])
    pq.write_table(table, os.path.join(folder, "mixture.parquet"))


def read_meta(output: str) -> dict | None:
    path = os.path.join(output, "mixture.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def build_mixture(config: MixtureConfig, output: str, *, overwrite: bool = False, dry_run: bool = False) -> dict:
    """Plan and (unless ``dry_run``) write the mixture; returns its ``mixture.json`` plus a ``build`` report.

    An output that already holds this very mixture (same fingerprint) is left as it is;
    one that holds another is an error unless ``overwrite``.
    """
    started = time.perf_counter()
    plan = plan_mixture(config)
    meta = mixture_meta(plan)
    build = {"seconds": plan.seconds, "reused": False, "dry_run": dry_run, "output": os.path.abspath(output)}
    if dry_run:
        build["seconds"]["total"] = round(time.perf_counter() - started, 3)
        return {**meta, "build": build}
    try:
        old = read_meta(output)
    except (ValueError, UnicodeDecodeError):
        if not overwrite:
            raise ConfigError(f"{output}/mixture.json is not valid JSON; pass --overwrite to rebuild the mixture",
                              key="--output") from None
        old = {}
    if old is not None and old.get("fingerprint") == meta["fingerprint"] and all(
            os.path.exists(os.path.join(output, part)) for part in (*PARTS, "mixture.parquet")):
        build.update(reused=True)
        build["seconds"]["total"] = round(time.perf_counter() - started, 3)
        return {**old, "build": build}
    if os.path.isdir(output) and not overwrite:
        if old is not None:
            what = "config" if old.get("config_fingerprint") != meta["config_fingerprint"] else "inputs"
            raise ConfigError(f"{output} holds a mixture built from other {what} "
                              f"(fingerprint {old.get('fingerprint')}, "
                              f"now {meta['fingerprint']}); pass --overwrite to rebuild it", key="--output")
        stray = sorted(set(os.listdir(output)) - {*PARTS, "mixture.parquet", ".building"})
        if stray:
            raise ConfigError(f"{output} is not empty and is not a mixture ({stray[0]} …): choose another folder",
                              key="--output")
    building = os.path.join(output, ".building")
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    with _timed(build["seconds"], "index"):
        write_index(plan, building)
    # the old mixture stops being one before its files are replaced; the new one is one when its json lands
    if os.path.exists(os.path.join(output, "mixture.json")):
        os.remove(os.path.join(output, "mixture.json"))
    for part in (*PARTS, "mixture.parquet"):
        target = os.path.join(output, part)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(os.path.join(building, part), target)
    with open(os.path.join(building, "mixture.json"), "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(os.path.join(building, "mixture.json"), os.path.join(output, "mixture.json"))
    os.rmdir(building)
    build["seconds"]["total"] = round(time.perf_counter() - started, 3)
    return {**meta, "build": build}
