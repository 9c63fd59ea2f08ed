"""Distributed connected components over hash-partitioned edge files.

The alternating large-star / small-star algorithm (Kiveris et al., "Connected
Components in MapReduce and Beyond", SoCC 2014): every step is a group-by on a
node over one partition of the edges, so no task ever holds the whole graph;
it converges in O(log^2 n) rounds (a handful in practice), after which every
component is a star around its smallest node. Node ids are int64 keys whose
order is the winner order, so the star's centre is the document to keep.

Files: ``<root>/r<k>/p<q>/<from>.parquet`` holds directed edges (src, dst) with
``partition(src) == q``; both directions of every undirected edge are present. ``root`` is a local
folder or an object-store prefix (``curate.storage``): on a cluster without a shared disk every
node reads and writes the same files there.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curate import storage
from curate.stages.minhash import fmix64

EDGE_SCHEMA = pa.schema([pa.field("src", pa.int64(), nullable=False), pa.field("dst", pa.int64(), nullable=False)])


def node_partition(nodes: np.ndarray, partitions: int) -> np.ndarray:
    return (fmix64(nodes.astype(np.uint64)) % np.uint64(partitions)).astype(np.int64)


def write_atomic(table: pa.Table, path: str) -> None:
    """Whole under ``path`` or not there (a rename locally, one upload to an object store).

    Snappy, not zstd: these files are hashes and keys that hardly compress, read back once.
    """
    storage.write_table(path, table, compression="snappy")


def read_dir(directory: str, columns: list[str] | None = None) -> pa.Table | None:
    """Every ``*.parquet`` file directly in ``directory`` (a folder or a prefix), in name order; None if none."""
    files = storage.glob(storage.join(directory, "*.parquet"))
    if not files:
        return None
    return pa.concat_tables([storage.read_table(f, columns=columns) for f in files])


def read_edges(directory: str) -> tuple[np.ndarray, np.ndarray]:
    table = read_dir(directory)
    if table is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return table["src"].to_numpy(), table["dst"].to_numpy()


def write_symmetric(src: np.ndarray, dst: np.ndarray, root: str, partitions: int, name: str) -> None:
    """Write undirected edges (both directions, self-loops dropped) into ``root/p<q>/<name>.parquet``."""
    keep = src != dst
    both_src = np.concatenate([src[keep], dst[keep]])
    both_dst = np.concatenate([dst[keep], src[keep]])
    owner = node_partition(both_src, partitions)
    order = np.argsort(owner, kind="stable")
    owner, both_src, both_dst = owner[order], both_src[order], both_dst[order]
    bounds = np.searchsorted(owner, np.arange(partitions + 1))
    for q in range(partitions):
        lo, hi = bounds[q], bounds[q + 1]
        if hi > lo:
            table = pa.table({"src": both_src[lo:hi], "dst": both_dst[lo:hi]}, schema=EDGE_SCHEMA)
            write_atomic(table, storage.join(root, f"p{q}", f"{name}.parquet"))


def unique_edges(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (src, dst), sorted by src then dst."""
    if src.size == 0:
        return src, dst
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    fresh = np.ones(src.size, bool)
    fresh[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    return src[fresh], dst[fresh]


def edge_checksum(src: np.ndarray, dst: np.ndarray) -> int:
    mixed = fmix64(src.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ dst.astype(np.uint64))
    return int(np.add.reduce(mixed, dtype=np.uint64)) if mixed.size else 0


def _group_min(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct src (src sorted): min over {src} and its masked neighbours; and each row's group index."""
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, src.size]))
    candidate = np.where(mask, dst, src)
    best = np.minimum(np.minimum.reduceat(candidate, starts), src[starts])
    return src[starts], best, group


def star_step(directory: str, out_root: str, partitions: int, partition: int, large: bool) -> dict:
    """One large-star (``large``) or small-star step over one partition; returns the input's size and checksum."""
    src, dst = unique_edges(*read_edges(directory))
    summary = {"edges": int(src.size), "checksum": edge_checksum(src, dst)}
    if src.size == 0:
        return summary
    if large:
        mask = np.ones(src.size, bool)
        _, best, group = _group_min(src, dst, mask)
        emit = dst > src
        out_src, out_dst = dst[emit], best[group[emit]]
    else:
        mask = dst < src
        nodes, best, group = _group_min(src, dst, mask)
        out_src = np.concatenate([dst[mask], nodes])
        out_dst = np.concatenate([best[group[mask]], best])
    write_symmetric(out_src, out_dst, out_root, partitions, f"from{partition}")
    return summary


def star_labels(directory: str) -> tuple[np.ndarray, np.ndarray]:
    """After convergence: (node, smallest node of its component) for the nodes of one partition."""
    src, dst = unique_edges(*read_edges(directory))
    if src.size == 0:
        return src, dst
    nodes, best, _ = _group_min(src, dst, np.ones(src.size, bool))
    return nodes, best


def components_local(src: np.ndarray, dst: np.ndarray) -> dict[int, int]:
    """Reference union-find (for tests): node -> smallest node of its component."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(src.tolist(), dst.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in list(parent)}
