"""``curate tokenize`` output as the files Megatron-LM and nanoGPT read, without a second tokenization.

A token folder (see ``curate.tokenizers.tokenize``) holds per-task shards: a flat
``.bin`` of ids and a ``.idx`` of uint64 document offsets. Trainers want other
layouts of the same ids:

**Megatron-LM / NeMo** (``megatron/core/datasets/indexed_dataset.py``): one
``PREFIX.bin`` of ids and one ``PREFIX.idx`` whose little-endian layout is::

    b"MMIDIDX\\x00\\x00"         9 bytes, the magic
    version                    uint64, 1
    dtype code                 uint8: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16
    sequence count S           uint64
    document count D           uint64, the length of the document index array (documents + 1)
    sequence lengths           S x int32, tokens per sequence
    sequence pointers          S x int64, byte offset of each sequence in the .bin
    document indices           D x int64, 0 then the sequence index where each document ends

Each of our documents (its EOS included) is one sequence, so the document
indices are ``0, 1, ..., n``. There is no uint32 code: a vocabulary over
65,536 pieces is written as int32. One prefix per source lets Megatron's
``--data-path`` blend them with weights.

**nanoGPT** (``train.py``'s ``get_batch``): ``train.bin`` and ``val.bin``, the
ids back to back as uint16 (which train.py hard-codes), and ``meta.pkl`` whose
``vocab_size`` train.py reads. Documents are split between the two by a hash of
their id, so a rerun, or a run with more sources, puts a document on the same
side.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

from curate.tokenizers.tokenize import source_dir, stats_table

MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
#: Megatron's ``DType`` enum: the code written in the header for each numpy dtype.
MEGATRON_DTYPE_CODES = {"uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "float64": 6, "float32": 7,
                        "uint16": 8}
MEGATRON_DTYPES = ("auto", "uint16", "int32", "int64")
NANOGPT_DTYPES = ("uint16", "uint32")
#: Tokens copied per step: bounds memory whatever the shard size.
CHUNK_TOKENS = 1 << 24


class TokenFolderError(ValueError):
    """The input is not a token folder, or its ids do not fit the asked dtype: a usage error (exit code 2).

    A token folder whose shards are damaged raises a plain ``ValueError`` (a failure, exit code 1).
    """


@dataclass
class MegatronParams:
    dtype: str = "auto"
    """Token dtype of the .bin: auto (uint16 when every id fits, else int32), uint16, int32 or int64."""
    merge: bool = False
    """One PREFIX for every source (``text_document``) instead of one per source."""
    sources: list[str] = field(default_factory=list)
    """Export only these sources (default: every source)."""

    def validate(self) -> None:
        if self.dtype not in MEGATRON_DTYPES:
            raise ValueError(f"dtype: must be one of {', '.join(MEGATRON_DTYPES)}")


@dataclass
class NanoGPTParams:
    val_fraction: float = 0.005
    """Share of documents (chosen by a hash of their id) that go to val.bin; at least one document does."""
    dtype: str = "uint16"
    """uint16 (what nanoGPT's train.py reads) or uint32 (train.py's np.uint16 must then be changed)."""
    sources: list[str] = field(default_factory=list)
    """Export only these sources (default: every source)."""

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError("val_fraction: must be between 0 and 1 (exclusive): nanoGPT evaluates on val.bin")
        if self.dtype not in NANOGPT_DTYPES:
            raise ValueError(f"dtype: must be one of {', '.join(NANOGPT_DTYPES)}")


@dataclass
class Shard:
    """One committed shard of a token folder: where its ids are and how they split into documents."""

    source: str
    bin_path: str
    offsets: np.ndarray  # uint64, documents + 1

    @property
    def docs(self) -> int:
        return len(self.offsets) - 1

    def tokens(self, dtype: np.dtype) -> np.ndarray:
        if os.path.getsize(self.bin_path) == 0:
            return np.zeros(0, dtype)
        return np.memmap(self.bin_path, dtype=dtype, mode="r")

    def ids(self) -> list[str]:
        return pq.read_table(self.bin_path[: -len(".bin")] + ".docs.parquet", columns=["id"])["id"].to_pylist()


@dataclass
class TokenFolder:
    path: str
    meta: dict
    shards: list[Shard]  # by source, then task

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(s.source for s in self.shards))


def open_token_folder(path: str, sources: list[str] | None = None) -> TokenFolder:
    """Read ``meta.json`` and the committed shards of a ``curate tokenize`` output; check they are whole."""
    from curate.remote import is_remote

    if is_remote(path):  # the shards are memory-mapped: they must be on a local disk
        from curate.tokenizers.tokenize import bring_local_hint

        raise TokenFolderError(f"{path}: in an object store: {bring_local_hint(path)}")
    meta_path = os.path.join(path, "meta.json")
    if not os.path.isdir(path):
        raise TokenFolderError(f"{path}: no such folder")
    if not os.path.isfile(meta_path) or not os.path.isdir(os.path.join(path, "done")):
        raise TokenFolderError(f"{path}: not a `curate tokenize` output (no meta.json and done/)")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        np.dtype(meta["dtype"]), int(meta["vocab_size"])
    except (ValueError, KeyError, TypeError) as err:
        raise TokenFolderError(f"{meta_path}: unreadable ({type(err).__name__}: {err})") from None
    stats = stats_table(path)
    if stats.num_rows == 0:
        raise TokenFolderError(f"{path}: no committed task (done/ is empty): run `curate tokenize` to the end first")
    by_source: dict[str, set[str]] = {}
    for source, shard in zip(stats["source"].to_pylist(), stats["shard"].to_pylist()):
        by_source.setdefault(source, set()).add(shard)
    if sources:
        unknown = [s for s in sources if s not in by_source]
        if unknown:
            raise TokenFolderError(f"{path}: no source {unknown[0]!r} (it holds: {', '.join(sorted(by_source))})")
        by_source = {s: by_source[s] for s in sources}
    shards = []
    itemsize = np.dtype(meta["dtype"]).itemsize
    for source in sorted(by_source):
        for shard in sorted(by_source[source]):
            bin_path = os.path.join(path, shard)
            idx_path = bin_path[: -len(".bin")] + ".idx"
            try:
                offsets = np.fromfile(idx_path, dtype=np.uint64)
                size = os.path.getsize(bin_path)
            except OSError as err:
                raise ValueError(f"{path}: shard {shard} is missing ({err.strerror})") from None
            if len(offsets) < 1 or offsets[0] != 0 or int(offsets[-1]) * itemsize != size \
                    or np.any(np.diff(offsets.astype(np.int64)) < 0):
                raise ValueError(f"{idx_path}: does not match its .bin ({size} bytes): the shard is damaged")
            shards.append(Shard(source, bin_path, offsets))
    return TokenFolder(path, meta, shards)


def _check_fits(folder: TokenFolder, dtype: np.dtype, hint: str) -> None:
    largest = int(folder.meta["vocab_size"]) - 1
    if largest > np.iinfo(dtype).max:
        raise TokenFolderError(f"{folder.path}/meta.json: vocab_size {folder.meta['vocab_size']} does not fit "
                               f"{dtype.name} (ids up to {np.iinfo(dtype).max}); {hint}")


def _copy_ids(tokens: np.ndarray, out, dtype: np.dtype, vocab_size: int, where: str) -> None:
    """Append ``tokens`` to the open file ``out`` as ``dtype``, a chunk at a time, checking every id."""
    for start in range(0, len(tokens), CHUNK_TOKENS):
        chunk = np.asarray(tokens[start:start + CHUNK_TOKENS])
        if chunk.size and int(chunk.max()) >= vocab_size:
            raise ValueError(f"{where}: id {int(chunk.max())} is outside the vocabulary ({vocab_size} pieces)")
        out.write(chunk.astype(dtype, copy=False).tobytes())


def _tmp(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}"


def _eos_count(folder: TokenFolder, shards: list[Shard]) -> int:
    """Documents whose last token is the EOS id (all of them unless tokenized with ``--no-eos``)."""
    eos = folder.meta.get("eos_id", -1)
    count = 0
    for shard in shards:
        ends = shard.offsets[1:][np.diff(shard.offsets) > 0].astype(np.int64) - 1
        if len(ends):
            count += int(np.count_nonzero(shard.tokens(folder.dtype)[ends] == eos))
    return count


# ---- Megatron ---------------------------------------------------------------------------------------------

def megatron_dtype(folder: TokenFolder, asked: str) -> np.dtype:
    if asked == "auto":
        return np.dtype(np.uint16) if int(folder.meta["vocab_size"]) <= 1 << 16 else np.dtype(np.int32)
    dtype = np.dtype(asked)
    _check_fits(folder, dtype, "use --dtype int32 (Megatron has no uint32)")
    return dtype


def megatron_index(lengths: np.ndarray, dtype: np.dtype) -> bytes:
    """The ``.idx`` bytes for documents of ``lengths`` tokens, one sequence per document."""
    if len(lengths) and int(lengths.max()) > np.iinfo(np.int32).max:
        raise ValueError(f"a document of {int(lengths.max())} tokens does not fit Megatron's int32 sequence length")
    count = len(lengths)
    pointers = np.zeros(count, dtype=np.int64)
    if count > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    header = (MEGATRON_MAGIC + struct.pack("<Q", MEGATRON_VERSION) + struct.pack("<B", MEGATRON_DTYPE_CODES[dtype.name])
              + struct.pack("<Q", count) + struct.pack("<Q", count + 1))
    return b"".join([header, lengths.astype("<i4").tobytes(), pointers.astype("<i8").tobytes(),
                     np.arange(count + 1, dtype="<i8").tobytes()])


def write_megatron_dataset(folder: TokenFolder, shards: list[Shard], prefix: str, dtype: np.dtype) -> dict:
    """Write ``prefix.bin`` and ``prefix.idx`` from ``shards``, in order; both renamed into place when whole."""
    vocab = int(folder.meta["vocab_size"])
    lengths = []
    with open(_tmp(prefix + ".bin"), "wb") as out:
        for shard in shards:
            _copy_ids(shard.tokens(folder.dtype), out, dtype, vocab, shard.bin_path)
            lengths.append(np.diff(shard.offsets).astype(np.int64))
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    with open(_tmp(prefix + ".idx"), "wb") as out:
        out.write(megatron_index(all_lengths, dtype))
    for suffix in (".bin", ".idx"):
        os.replace(_tmp(prefix + suffix), prefix + suffix)
    return {"prefix": prefix, "documents": int(len(all_lengths)), "tokens": int(all_lengths.sum()),
            "documents_ending_with_eos": _eos_count(folder, shards)}


def export_megatron(tokens_dir: str, output: str, params: MegatronParams) -> dict:
    """One Megatron indexed dataset per source (or one for all): ``OUTPUT/<source>_text_document.{bin,idx}``.

    Returns a report with a ``--data-path`` line that blends the sources by their
    token counts (the corpus's natural mix; change the weights to re-mix).
    """
    folder = open_token_folder(tokens_dir, params.sources or None)
    dtype = megatron_dtype(folder, params.dtype)
    os.makedirs(output, exist_ok=True)
    groups = {"all": folder.shards} if params.merge else \
        {s: [sh for sh in folder.shards if sh.source == s] for s in folder.sources}
    datasets = {}
    for name, shards in groups.items():
        stem = "text_document" if params.merge else f"{source_dir(name)}_text_document"
        datasets[name] = write_megatron_dataset(folder, shards, os.path.join(os.path.abspath(output), stem), dtype)
    total = sum(d["tokens"] for d in datasets.values()) or 1
    data_path = " ".join(f"{d['tokens'] / total:.6g} {d['prefix']}" for d in datasets.values())
    return {"format": "megatron", "output": os.path.abspath(output), "dtype": dtype.name,
            "dtype_code": MEGATRON_DTYPE_CODES[dtype.name], "vocab_size": folder.meta["vocab_size"],
            "eos_id": folder.meta.get("eos_id"), "datasets": datasets, "data_path": data_path}


# ---- nanoGPT ----------------------------------------------------------------------------------------------

def _hash_unit(doc_id: str) -> float:
    """A document's place in [0, 1), from its id alone."""
    digest = hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def export_nanogpt(tokens_dir: str, output: str, params: NanoGPTParams) -> dict:
    """``OUTPUT/train.bin``, ``OUTPUT/val.bin`` and ``OUTPUT/meta.pkl`` for nanoGPT's ``train.py``."""
    folder = open_token_folder(tokens_dir, params.sources or None)
    dtype = np.dtype(params.dtype)
    _check_fits(folder, dtype, "pass --dtype uint32 and read it with np.uint32 in nanoGPT's get_batch")
    units = [np.array([_hash_unit(i) for i in shard.ids()], dtype=np.float64) for shard in folder.shards]
    for shard, u in zip(folder.shards, units):
        if len(u) != shard.docs:
            raise ValueError(f"{shard.bin_path[:-4]}.docs.parquet: {len(u)} ids for {shard.docs} documents")
    total_docs = sum(len(u) for u in units)
    if total_docs < 2:
        raise TokenFolderError(f"{tokens_dir}: {total_docs} document(s): train and val need one each at least")
    val = [u < params.val_fraction for u in units]
    if not any(v.any() for v in val):  # a small corpus: the document with the smallest hash goes to val
        k = int(np.argmin([u.min() if len(u) else np.inf for u in units]))
        val[k][int(np.argmin(units[k]))] = True
    if all(v.all() for v in val):  # and train keeps the document with the largest hash
        k = int(np.argmax([u.max() if len(u) else -np.inf for u in units]))
        val[k][int(np.argmax(units[k]))] = False
    os.makedirs(output, exist_ok=True)
    vocab = int(folder.meta["vocab_size"])
    counts = {"train": {"documents": 0, "tokens": 0}, "val": {"documents": 0, "tokens": 0}}
    paths = {split: os.path.join(os.path.abspath(output), f"{split}.bin") for split in counts}
    files = {split: open(_tmp(path), "wb") for split, path in paths.items()}
    try:
        for shard, is_val in zip(folder.shards, val):
            tokens = shard.tokens(folder.dtype)
            starts, ends = shard.offsets[:-1].astype(np.int64), shard.offsets[1:].astype(np.int64)
            for split, chosen in (("train", ~is_val), ("val", is_val)):
                # runs of consecutive documents on the same side are copied as one slice
                idx = np.flatnonzero(chosen)
                if not len(idx):
                    continue
                breaks = np.flatnonzero(np.diff(idx) > 1)
                for a, b in zip(np.r_[0, breaks + 1], np.r_[breaks, len(idx) - 1]):
                    lo, hi = int(starts[idx[a]]), int(ends[idx[b]])
                    _copy_ids(tokens[lo:hi], files[split], dtype, vocab, shard.bin_path)
                    counts[split]["tokens"] += hi - lo
                counts[split]["documents"] += len(idx)
    except BaseException:
        for split, f in files.items():
            f.close()
            os.remove(_tmp(paths[split]))
        raise
    for split, f in files.items():
        f.close()
        os.replace(_tmp(paths[split]), paths[split])
    meta = {"vocab_size": vocab, "dtype": dtype.name, "eos_id": folder.meta.get("eos_id"),
            "bos_id": folder.meta.get("bos_id"), "tokenizer": folder.meta.get("tokenizer"),
            "tokenizer_sha256": folder.meta.get("tokenizer_sha256")}
    meta_path = os.path.join(output, "meta.pkl")
    with open(_tmp(meta_path), "wb") as f:
        pickle.dump(meta, f)
    os.replace(_tmp(meta_path), meta_path)
    return {"format": "nanogpt", "output": os.path.abspath(output), "dtype": dtype.name, "vocab_size": vocab,
            "eos_id": folder.meta.get("eos_id"), "val_fraction": params.val_fraction,
            "sources": folder.sources, **counts,
            "documents_ending_with_eos": _eos_count(folder, folder.shards)}
