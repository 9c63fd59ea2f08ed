"""``MixtureDataset``: the samples of a built mixture, memory-mapped, by index.

    ds = MixtureDataset("MIX")                 # split="train"
    x = ds[123]                                # np.int64 array of seq_len + 1 token ids
    ds.component_of(123)                       # "web-zh-top"
    mine = ds.shard(rank, world)               # sample j of mine is ds[j * world + rank]
    val = MixtureDataset("MIX", split="val", component="books")   # one component's held-out samples

Reading sample i costs two index look-ups and one slice per document it spans:
nothing is loaded up front, so opening is instant and a trainer resumes at any
sample. Opening checks that the token shards are the ones the index was built
from (their size and modification time), so a stale index is never read.
"""

from __future__ import annotations

import json
import os

import numpy as np

from curate.params import ConfigError


class MixtureError(ConfigError):
    """A folder that is not a mixture, or whose inputs changed since it was built."""


class MixtureDataset:
    """The ``split`` samples of the mixture in ``path`` (optionally one ``component``'s only)."""

    def __init__(self, path: str, split: str = "train", component: str | None = None):
        if split not in ("train", "val"):
            raise MixtureError(f"expected 'train' or 'val', got {split!r}", key="split")
        self.path, self.split = os.fspath(path), split
        meta_path = os.path.join(self.path, "mixture.json")
        if not os.path.isfile(meta_path):
            raise MixtureError("not a mixture (no mixture.json; build one with `curate mix`)", file=self.path)
        try:
            with open(meta_path) as f:
                self.meta: dict = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise MixtureError(f"not valid JSON ({err}); rebuild it with `curate mix --overwrite`",
                               file=meta_path) from None
        from curate.mixtures.build import FORMAT_VERSION

        if self.meta.get("format_version") != FORMAT_VERSION:
            raise MixtureError(f"format_version {self.meta.get('format_version')} is not {FORMAT_VERSION}: rebuild "
                               "it with this version's `curate mix --overwrite`", file=meta_path, key="format_version")
        for entry in self.meta["inputs"]:
            try:
                st = os.stat(entry["path"])
            except FileNotFoundError:
                raise MixtureError(f"input {entry['path']} is gone; rebuild the mixture", file=meta_path,
                                   key="inputs") from None
            if st.st_size != entry["size"] or st.st_mtime_ns != entry["mtime_ns"]:
                raise MixtureError(f"input {entry['path']} changed since the mixture was built (fingerprint "
                                   f"{self.meta['fingerprint']}); rebuild it with `curate mix --overwrite`",
                                   file=meta_path, key="inputs")
        self.seq_len: int = int(self.meta["seq_len"])
        self.vocab_size: int = int(self.meta["vocab_size"])
        self.eos_id: int = int(self.meta["eos_id"])
        self.components: list[str] = [c["name"] for c in self.meta["components"]]
        self._index = self._load(split, "index.npy")
        self._map: range | np.ndarray = range(len(self._index))
        if component is not None:
            if component not in self.components:
                raise MixtureError(f"no component {component!r} (components: {', '.join(self.components)})",
                                   file=meta_path, key="component")
            c = self.components.index(component)
            self._map = np.flatnonzero(np.asarray(self._index[:, 0]) == c)
        self.component = component
        self._open: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # component: docs, order, starts
        self._shards: dict[int, np.ndarray] = {}

    # -- views ---------------------------------------------------------------------------------------------------
    def shard(self, rank: int, world: int) -> "MixtureDataset":
        """This rank's samples: sample j of the view is sample ``j * world + rank`` of this dataset."""
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} of world {world}: need 0 <= rank < world")
        view = object.__new__(MixtureDataset)
        view.__dict__.update(self.__dict__)
        view._map = self._map[rank::world]
        view._open, view._shards = {}, {}
        return view

    def __len__(self) -> int:
        return len(self._map)

    def _global(self, i: int) -> int:
        n = len(self._map)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return int(self._map[i])

    def component_of(self, i: int) -> str:
        return self.components[self._index.item(self._global(i), 0)]

    # -- reading -------------------------------------------------------------------------------------------------
    def __getitem__(self, i: int) -> np.ndarray:
        out = np.empty(self.seq_len + 1, dtype=np.int64)
        c, k = self._index[self._global(i)].tolist()
        self._read(c, k, out, 0, len(out))
        return out

    def batch(self, indices) -> np.ndarray:
        """Samples ``indices`` as one (len(indices), seq_len + 1) int64 array."""
        rows = self._globals(indices)
        need = self.seq_len + 1
        out = np.empty((len(rows), need), dtype=np.int64)
        flat, read = out.reshape(-1), self._read
        for row, (c, k) in enumerate(self._index[rows].tolist()):
            read(c, k, flat, row * need, need)
        return out

    def _globals(self, indices) -> np.ndarray:
        """Global sample numbers of view positions ``indices`` (vectorized ``_global``)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self._map)
        idx = np.where(idx < 0, idx + n, idx)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"sample {int(idx[(idx < 0) | (idx >= n)][0])} out of range for {n} samples")
        if isinstance(self._map, range):
            return self._map.start + idx * self._map.step
        return self._map[idx]

    def _read(self, c: int, k: int, out: np.ndarray, base: int, need: int) -> None:
        """Write component c's sample k to ``out[base:base + need]``: its documents from its start, EOS between."""
        component = self._open.get(c)
        if component is None:
            component = self._open_component(c)
        docs, order, starts = component
        shards = self._shards
        p, offset = starts[k].tolist()
        filled, end = base, base + need
        while True:
            shard, start, length, stored = docs[order.item(p)].tolist()
            take = min(length - offset, end - filled)
            tokens = shards.get(shard)
            if tokens is None:
                tokens = self._open_shard(shard)
            if offset + take <= stored:
                out[filled:filled + take] = tokens[start + offset:start + offset + take]
            else:  # the shard has no EOS after this document: the packing adds it
                real = max(stored - offset, 0)
                out[filled:filled + real] = tokens[start + offset:start + offset + real]
                out[filled + real:filled + take] = self.eos_id
            filled += take
            if filled == end:
                return
            p += 1
            offset = 0

    def _load(self, split: str, name: str) -> np.ndarray:
        path = os.path.join(self.path, split, name)
        try:
            # a plain ndarray over the map: np.memmap's own indexing costs more than the read itself
            return np.load(path, mmap_mode="r").view(np.ndarray)
        except FileNotFoundError:
            raise MixtureError(f"{path} is missing: the mixture is incomplete; rebuild it with `curate mix "
                               "--overwrite`", file=self.path) from None

    def _open_component(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        docs = np.load(os.path.join(self.path, "docs", f"c{c}.npy"), mmap_mode="r").view(np.ndarray)
        self._open[c] = (docs, self._load(self.split, f"c{c}.order.npy"), self._load(self.split, f"c{c}.samples.npy"))
        return self._open[c]

    def _open_shard(self, shard: int) -> np.ndarray:
        entry = self.meta["shards"][shard]
        if os.path.getsize(entry["path"]):
            tokens = np.memmap(entry["path"], dtype=entry["dtype"], mode="r").view(np.ndarray)
        else:
            tokens = np.zeros(0, dtype=entry["dtype"])
        self._shards[shard] = tokens
        return tokens

    # -- pickling (DataLoader workers): memory maps are reopened, never copied ------------------------------------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_index"] = None
        state["_open"], state["_shards"] = {}, {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._index = self._load(self.split, "index.npy")

    def __repr__(self) -> str:
        part = f", component={self.component!r}" if self.component else ""
        return f"MixtureDataset({self.path!r}, split={self.split!r}{part}: {len(self)} samples of {self.seq_len + 1})"
