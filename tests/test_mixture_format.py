"""Token folders in `curate tokenize`'s on-disk format, written from generated token arrays.

Used by the mixture tests for sizes no real text here reaches (GPT-3's table scaled
down) and by ``benchmarks/mixture_bench.py``. The files are written by tokenize's own
shard writer, so the layout is the real one; ``test_synthetic_folder_reads_back``
checks it against ``read_tokens`` and ``stats_table``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.tokenizers.tokenize import STATS_SCHEMA, _ShardWriter, read_tokens, stats_table, token_dtype

SYNTHETIC_SHA = "0" * 63 + "1"


def write_meta(root: str, vocab_size: int = 32000, eos_id: int = 2, sha256: str = SYNTHETIC_SHA) -> dict:
    os.makedirs(os.path.join(root, "stats"), exist_ok=True)
    os.makedirs(os.path.join(root, "done"), exist_ok=True)
    meta = {"format_version": 1, "tokenizer": "/synthetic/tokenizer.model", "tokenizer_sha256": sha256,
            "vocab_size": vocab_size, "dtype": token_dtype(vocab_size).name, "eos_id": eos_id, "bos_id": 1,
            "pad_id": 3, "unk_id": 0}
    with open(os.path.join(root, "meta.json"), "w") as f:
        json.dump(meta, f)
    return meta


def write_shard(root: str, source: str, task: str, lengths: np.ndarray, *, langs: list | None = None,
                seed: int = 0, eos: bool = True, ids: list[str] | None = None) -> None:
    """One task's shard of ``source``: documents of ``lengths`` tokens (EOS included when ``eos``)."""
    with open(os.path.join(root, "meta.json")) as f:
        meta = json.load(f)
    dtype = np.dtype(meta["dtype"])
    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    flat = rng.integers(4, meta["vocab_size"], size=int(lengths.sum()), dtype=np.int64)
    if eos:
        flat[np.cumsum(lengths) - 1] = meta["eos_id"]
    ids = ids or [f"{source}-{task}-{i}" for i in range(len(lengths))]
    langs = langs or ["en"] * len(lengths)
    writer = _ShardWriter(root, source, task, dtype)
    writer.write(ids, langs, flat, lengths)
    shard = writer.commit()
    rows = [{"task": task, "source": source, "lang": lang, "docs": int(sum(1 for x in langs if x == lang)),
             "tokens": int(lengths[np.array(langs) == lang].sum()), "bytes": 0, "shard": shard}
            for lang in sorted(set(langs))]
    pq.write_table(pa.Table.from_pylist(rows, schema=STATS_SCHEMA), os.path.join(root, "stats", f"{task}.parquet"))
    with open(os.path.join(root, "done", task), "w") as f:
        json.dump({"input": "synthetic", "skipped": {}}, f)


def write_sized_source(root: str, source: str, tokens: int, *, mean_length: int = 600, shards: int = 2,
                       seed: int = 0, eos: bool = True) -> None:
    """A source of exactly ``tokens`` tokens in documents of about ``mean_length`` (lognormal lengths)."""
    rng = np.random.default_rng(seed)
    lengths = np.maximum(2, rng.lognormal(np.log(mean_length) - 0.5, 1.0, size=tokens // mean_length * 2 + 10)
                         .astype(np.int64))
    ends = np.cumsum(lengths)
    n = int(np.searchsorted(ends, tokens, side="left")) + 1
    lengths = lengths[:n]
    lengths[-1] -= int(lengths.sum()) - tokens
    if lengths[-1] < 2:
        lengths[-2] += lengths[-1] - 2
        lengths[-1] = 2
    per = -(-n // shards)
    for k in range(shards):
        part = lengths[k * per:(k + 1) * per]
        if len(part):
            write_shard(root, source, f"{source}-part{k}", part, seed=seed * 100 + k, eos=eos)


def test_synthetic_folder_reads_back(tmp_path):
    root = str(tmp_path / "tokens")
    write_meta(root)
    write_sized_source(root, "web", 50_000, mean_length=300, shards=3, seed=4)
    stats = stats_table(root)
    assert sum(stats["tokens"].to_pylist()) == 50_000
    total = 0
    for tokens, offsets in read_tokens(root, "web"):
        ends = offsets[1:].astype(np.int64) - 1
        assert (tokens[ends] == 2).all()
        total += len(tokens)
    assert total == 50_000
