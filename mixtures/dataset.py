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
        with open(meta_path) as f:
            self.meta: dict = json.load(f)
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
        self._docs: dict[int, np.ndarray] = {}
        self._orders: dict[int, np.ndarray] = {}
        self._starts: dict[int, np.ndarray] = {}
        self._shards: dict[int, np.ndarray] = {}

    # -- views ---------------------------------------------------------------------------------------------------
    def shard(self, rank: int, world: int) -> "MixtureDataset":
        """This rank's samples: sample j of the view is sample ``j * world + rank`` of this dataset."""
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} of world {world}: need 0 <= rank < world")
        view = object.__new__(MixtureDataset)
        view.__dict__.update(self.__dict__)
        view._map = self._map[rank::world]
        view._docs, view._orders, view._starts, view._shards = {}, {}, {}, {}
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
        self._read(c, k, out)
        return out

    def batch(self, indices) -> np.ndarray:
        """Samples ``indices`` as one (len(indices), seq_len + 1) int64 array."""
        out = np.empty((len(indices), self.seq_len + 1), dtype=np.int64)
        for row, i in enumerate(indices):
            c, k = self._index[self._global(int(i))].tolist()
            self._read(c, k, out[row])
        return out

    def _read(self, c: int, k: int, out: np.ndarray) -> None:
        if c not in self._docs:
            self._open_component(c)
        docs, order = self._docs[c], self._orders[c]
        p, offset = self._starts[c][k].tolist()
        need, filled = len(out), 0
        while filled < need:
            shard, start, length, stored = docs[order.item(p)].tolist()
            take = min(length - offset, need - filled)
            real = min(take, stored - offset)
            if real > 0:
                tokens = self._shards.get(shard)
                if tokens is None:
                    tokens = self._open_shard(shard)
                out[filled:filled + real] = tokens[start + offset:start + offset + real]
            if real < take:  # the shard has no EOS after this document: the packing adds it
                out[filled + max(real, 0):filled + take] = self.eos_id
            filled += take
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

    def _open_component(self, c: int) -> None:
        self._docs[c] = np.load(os.path.join(self.path, "docs", f"c{c}.npy"), mmap_mode="r").view(np.ndarray)
        self._orders[c] = self._load(self.split, f"c{c}.order.npy")
        self._starts[c] = self._load(self.split, f"c{c}.samples.npy")

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
        state["_docs"], state["_orders"], state["_starts"], state["_shards"] = {}, {}, {}, {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._index = self._load(self.split, "index.npy")

    def __repr__(self) -> str:
        part = f", component={self.component!r}" if self.component else ""
        return f"MixtureDataset({self.path!r}, split={self.split!r}{part}: {len(self)} samples of {self.seq_len + 1})"
