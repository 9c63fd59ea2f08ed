"""Evaluation sets for ablations: held-out texts as token sequences, with the bytes each one encodes.

An evaluation set is a list of *units*, each a token sequence whose first token is context only and whose
other tokens are predicted. Three kinds:

- **text**: a file or folder of JSONL, txt or Parquet (or a curate output folder), read as ``curate tokenize``
  reads it and encoded with the mixtures' tokenizer. A unit is one document: ``[EOS] + its tokens`` (the
  EOS stands for "a document starts here", as it does between documents in training), and its bytes are
  the UTF-8 length of its text.
- **tokens**: a ``curate tokenize`` folder, or one source's folder inside it; it must have been written with
  the mixtures' tokenizer (same sha256). A unit is one document, as above (its trailing EOS is not
  predicted); bytes are the UTF-8 length of the decoded document, which is the text itself under the
  identity normalization ``curate tokenizer train`` uses.
- **val**: the first samples of a mixture's validation split (``seq_len + 1`` tokens each, documents packed
  with EOS between them, as the trainer validates). Their bytes come from each piece's UTF-8 length; a
  piece that starts a document loses its dummy-prefix space; EOS and other control pieces are 0 bytes.

Units are scored in windows of the model's ``seq_len`` (``evaluate.py``), so a long document is as many
windows as it needs and every unit's loss is kept: that is what the bootstrap over documents resamples.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from curate.params import ConfigError

SPACE = "\u2581"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class EvalSet:
    """Units as one flat int64 array with offsets (unit i is ``flat[offsets[i]:offsets[i+1]]``)."""

    name: str
    kind: str
    """text, tokens or val."""
    path: str
    flat: np.ndarray
    offsets: np.ndarray
    bytes: np.ndarray
    """UTF-8 bytes of the predicted tokens of each unit."""
    ids: list[str]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def tokens(self) -> np.ndarray:
        """Predicted tokens per unit (its length minus the context token)."""
        return np.diff(self.offsets) - 1

    def unit(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for array in (self.flat, self.offsets, self.bytes):
            h.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": self.path, "units": len(self),
                "tokens": int(self.tokens.sum()), "bytes": int(self.bytes.sum()), "fingerprint": self.fingerprint(),
                "notes": self.notes}


def _pack(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(sequences).astype(np.int64) if sequences else np.zeros(0, np.int64)
    return flat, offsets


def split_spec(spec: str, option: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or ``PATH`` (a path that exists wins over a ``=`` inside it)."""
    name, sep, path = spec.partition("=")
    if not sep or os.path.exists(spec) or not NAME.match(name):
        return None, spec
    return name, path


def default_name(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    for suffix in (".gz", ".jsonl", ".json", ".ndjson", ".txt", ".parquet"):
        base = base.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", base).strip("_.") or "eval"


# ------------------------------------------------------------------------------------------------ tokenizers


class Pieces:
    """A SentencePiece model and what evaluation needs of it: encoding, decoding, bytes per piece."""

    def __init__(self, path: str, sha256: str | None, where: str):
        if not os.path.isfile(path):
            raise ConfigError(f"the tokenizer {path} it names is gone (needed to read evaluation texts and count "
                              "their bytes)", file=where, key="tokenizer")
        with open(path, "rb") as f:
            model = f.read()
        if sha256 and hashlib.sha256(model).hexdigest() != sha256:
            raise ConfigError(f"the tokenizer {path} changed since the mixture was built (sha256 differs)",
                              file=where, key="tokenizer_sha256")
        from curate.tokenizers.encoder import Encoder

        self.path, self.model = path, model
        self.encoder = Encoder(model)
        self.sp = self.encoder.sp
        self.dummy_prefix = bool(self.encoder.dummy_prefix)
        sizes = np.zeros(self.sp.get_piece_size(), dtype=np.int64)
        starts_with_space = np.zeros(self.sp.get_piece_size(), dtype=bool)
        for i in range(self.sp.get_piece_size()):
            if self.sp.is_control(i) or self.sp.is_unknown(i):
                continue
            if self.sp.is_byte(i):
                sizes[i] = 1
                continue
            piece = self.sp.id_to_piece(i)
            sizes[i] = len(piece.replace(SPACE, " ").encode("utf-8"))
            starts_with_space[i] = piece.startswith(SPACE)
        self.piece_bytes, self.starts_with_space = sizes, starts_with_space
        self.doc_start = {t for t in (self.sp.eos_id(), self.sp.bos_id()) if t >= 0}

    def packed_bytes(self, sequence: np.ndarray) -> int:
        """UTF-8 bytes of ``sequence[1:]``, the predicted tokens of a packed sample (documents between EOS)."""
        targets, previous = sequence[1:], sequence[:-1]
        total = int(self.piece_bytes[targets].sum())
        if self.dummy_prefix:  # the space SentencePiece adds in front of every document is not text
            starts = np.isin(previous, list(self.doc_start)) & self.starts_with_space[targets]
            total -= int(starts.sum())
        return total


# ------------------------------------------------------------------------------------------------ loading


def load_eval_set(name: str | None, path: str, pieces: Pieces, tokenizer_sha256: str, eos_id: int,
                  option: str = "--eval") -> EvalSet:
    """An evaluation set from a token folder (or one source's folder in it) or from text files."""
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such file or directory", key=option)
    name = name or default_name(path)
    if os.path.isfile(os.path.join(path, "meta.json")):
        return _token_folder(name, path, None, pieces, tokenizer_sha256, eos_id, option)
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) and os.path.isfile(os.path.join(parent, "meta.json")):
        return _token_folder(name, parent, os.path.basename(os.path.normpath(path)), pieces, tokenizer_sha256,
                             eos_id, option)
    return _text(name, path, pieces, eos_id, option)


def _token_folder(name: str, root: str, source_dir: str | None, pieces: Pieces, tokenizer_sha256: str, eos_id: int,
                  option: str) -> EvalSet:
    import pyarrow.parquet as pq

    from curate.tokenizers.tokenize import stats_table

    meta_path = os.path.join(root, "meta.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"not a readable token folder ({err})", file=meta_path, key=option) from None
    if meta.get("tokenizer_sha256") != tokenizer_sha256:
        theirs = str(meta.get("tokenizer_sha256"))[:12]
        raise ConfigError(f"tokenized with {meta.get('tokenizer')} (sha256 {theirs}…), "
                          f"not the mixtures' tokenizer {pieces.path} (sha256 {tokenizer_sha256[:12]}…): losses over "
                          "other token ids are not comparable; tokenize the text with the mixtures' tokenizer",
                          file=meta_path, key="tokenizer_sha256")
    shards = sorted(set(stats_table(root)["shard"].to_pylist()))
    if source_dir is not None:
        shards = [s for s in shards if s.split("/")[0] == source_dir]
    if not shards:
        where = f"{root}/{source_dir}" if source_dir else root
        raise ConfigError("no committed token shards (has `curate tokenize` finished?)", file=where, key=option)
    dtype = np.dtype(meta["dtype"])
    sequences, ids, sizes = [], [], []
    for shard in shards:
        path = os.path.join(root, shard)
        tokens = np.memmap(path, dtype=dtype, mode="r") if os.path.getsize(path) else np.zeros(0, dtype)
        offsets = np.fromfile(path[: -len(".bin")] + ".idx", dtype=np.uint64).astype(np.int64)
        shard_ids = pq.read_table(path[: -len(".bin")] + ".docs.parquet", columns=["id"])["id"].to_pylist()
        for doc_id, start, end in zip(shard_ids, offsets[:-1], offsets[1:]):
            doc = np.asarray(tokens[start:end], dtype=np.int64)
            if len(doc) and doc[-1] == eos_id:
                doc = doc[:-1]
            if not len(doc):
                continue
            sequences.append(np.concatenate(([eos_id], doc)))
            ids.append(doc_id)
            sizes.append(len(pieces.sp.decode(doc.tolist()).encode("utf-8")))
    flat, offsets = _pack(sequences)
    label = os.path.join(root, source_dir) if source_dir else root
    return EvalSet(name, "tokens", os.path.abspath(label), flat, offsets, np.array(sizes, dtype=np.int64), ids)


def _text(name: str, path: str, pieces: Pieces, eos_id: int, option: str) -> EvalSet:
    from curate.tokenizers.corpus import InputError, input_files, read_documents

    try:
        files = input_files([path], "auto", name)
    except InputError as err:
        raise ConfigError(f"{err} (an evaluation set is a token folder, or JSONL, txt or Parquet text)",
                          key=option) from None
    sequences, ids, sizes = [], [], []
    for item in files:
        try:
            for table in read_documents(item):
                texts = table["text"].to_pylist()
                flat, lengths = pieces.encoder.encode_flat(texts, -1)
                ends = np.cumsum(lengths)
                for doc_id, text, end, n in zip(table["id"].to_pylist(), texts, ends.tolist(), lengths.tolist()):
                    if n == 0:
                        continue
                    sequences.append(np.concatenate(([eos_id], flat[end - n:end])))
                    ids.append(doc_id)
                    sizes.append(len(text.encode("utf-8")))
        except InputError as err:
            raise ConfigError(str(err), key=option) from None
    if not sequences:
        raise ConfigError(f"{path}: no document with text", key=option)
    flat, offsets = _pack(sequences)
    return EvalSet(name, "text", os.path.abspath(path), flat, offsets, np.array(sizes, dtype=np.int64), ids)


def validation_set(name: str, mixture: str, samples: int, seq_len: int, pieces: Pieces) -> EvalSet | None:
    """The first ``samples`` samples of a mixture's validation split, cut to ``seq_len + 1`` tokens."""
    from curate.mixtures import MixtureDataset

    ds = MixtureDataset(mixture, split="val")
    n = min(samples, len(ds))
    if n == 0:
        return None
    batch = ds.batch(range(n))[:, : seq_len + 1]
    sizes = np.array([pieces.packed_bytes(row) for row in batch], dtype=np.int64)
    flat, offsets = _pack(list(batch))
    return EvalSet(name, "val", os.path.abspath(mixture), flat, offsets, sizes, [f"val-{i}" for i in range(n)])


def document_ids(mixture: str, split: str) -> set[str]:
    """Ids of a mixture's documents in ``split`` (train or val; ``MIX/documents/c*.parquet``)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for path in sorted(glob.glob(os.path.join(mixture, "documents", "c*.parquet"))):
        table = pq.read_table(path, columns=["id", "split"])
        ids.update(table.filter(pc.equal(table["split"], split))["id"].to_pylist())
    return ids
