"""Mixture benchmark: random sample reads vs nanoGPT's ``get_batch``, and the index build for ~5M samples.

    python -m curate.benchmarks.mixture_bench                      # 100M tokens to read, 10B-token order to build
    python -m curate.benchmarks.mixture_bench --read-tokens 20M --build-tokens 1B     # a quick run

1. **Reads.** Four sources of generated tokens (lognormal document lengths, mean 700)
   are written in `curate tokenize`'s format, and the same tokens, concatenated,
   as one nanoGPT ``train.bin``. A mixture of the four is built (seq_len 1024).
   Then, in alternating rounds, batches of 12 random samples (nanoGPT's GPT-2
   config: ``batch_size = 12``, ``block_size = 1024``) are read

   - nanoGPT's way, its ``get_batch`` as written in its train.py: a fresh
     ``np.memmap`` of train.bin per batch, random windows, ``x`` and ``y`` each
     sliced and converted, stacked with torch (numpy when torch is absent);
   - from ``MixtureDataset.batch`` (random sample ids), ``x`` and ``y`` being
     views of the one array, made a torch tensor the same way;
   - and, numpy only, nanoGPT's idea without its per-batch overheads (random
     windows of one open memmap, ``astype``, ``np.stack``) against
     ``MixtureDataset.batch`` alone.

   Both files are read once first, so both runs read from the page cache. The
   ratios (mixture samples/s over the baseline's) are medians over the rounds, by
   wall clock and by CPU time of this process (steadier on a shared machine).

2. **Build.** The order for ``--build-tokens`` (10B) at seq_len 2048 (about 4.9M
   samples) over four sources of 2.5M documents in all, whose token files are
   sparse (size right, no data: building reads only the document index and the
   last token of each document). `curate mix` runs in a child process; its
   wall time and peak memory (VmHWM) are printed, with the time per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.mixtures.config import parse_tokens
from curate.tokenizers.tokenize import DOCS_SCHEMA, STATS_SCHEMA

BATCH, BLOCK = 12, 1024
SOURCES = [("web", 0.55), ("books", 0.2), ("code", 0.15), ("wiki", 0.1)]


def write_meta(root: str, vocab_size: int = 32000) -> None:
    os.makedirs(os.path.join(root, "stats"), exist_ok=True)
    os.makedirs(os.path.join(root, "done"), exist_ok=True)
    meta = {"format_version": 1, "tokenizer": "/bench/tokenizer.model", "tokenizer_sha256": "b" * 64,
            "vocab_size": vocab_size, "dtype": "uint16", "eos_id": 2, "bos_id": 1, "pad_id": 3, "unk_id": 0}
    with open(os.path.join(root, "meta.json"), "w") as f:
        json.dump(meta, f)


def doc_lengths(tokens: int, mean: int, rng: np.random.Generator) -> np.ndarray:
    drawn = rng.lognormal(np.log(mean) - 0.5, 1.0, size=int(tokens / mean * 1.3) + 100)
    lengths = np.maximum(2, drawn).astype(np.int64)
    n = int(np.searchsorted(np.cumsum(lengths), tokens)) + 1
    lengths = lengths[:n]
    lengths[-1] = max(2, lengths[-1] - (int(lengths.sum()) - tokens))
    return lengths


def write_source(root: str, source: str, tokens: int, rng: np.random.Generator, *, sparse: bool,
                 mean: int = 700) -> np.ndarray | None:
    """One shard of ``source`` in tokenize's layout; returns its tokens (None when the .bin is sparse)."""
    lengths = doc_lengths(tokens, mean, rng)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint64)
    task = f"{source}-bench"
    os.makedirs(os.path.join(root, source), exist_ok=True)
    base = os.path.join(root, source, task)
    flat = None
    if sparse:
        with open(base + ".bin", "wb") as f:
            f.truncate(int(offsets[-1]) * 2)
    else:
        flat = rng.integers(4, 32000, size=int(offsets[-1]), dtype=np.uint16)
        flat[offsets[1:].astype(np.int64) - 1] = 2
        flat.tofile(base + ".bin")
    offsets.tofile(base + ".idx")
    ids = pa.array([f"{source}-{i:09d}" for i in range(len(lengths))])
    pq.write_table(pa.table({"id": ids, "lang": pa.array(["en"] * len(lengths)),
                             "offset": pa.array(offsets[:-1].astype(np.int64)), "tokens": pa.array(lengths)},
                            schema=DOCS_SCHEMA), base + ".docs.parquet")
    pq.write_table(pa.Table.from_pylist([{"task": task, "source": source, "lang": "en", "docs": len(lengths),
                                          "tokens": int(lengths.sum()), "bytes": 0, "shard": f"{source}/{task}.bin"}],
                                        schema=STATS_SCHEMA), os.path.join(root, "stats", task + ".parquet"))
    with open(os.path.join(root, "done", task), "w") as f:
        f.write("{}")
    return flat


def mixture_yaml(path: str, tokens_dir: str, budget: int, seq_len: int, max_epochs: float) -> str:
    lines = [f"tokens: {budget}", f"seq_len: {seq_len}", "seed: 1", f"max_epochs: {max_epochs}",
             "validation: 0.001", f"paths: [{tokens_dir}]", "components:"]
    lines += [f"  - {{source: {s}, weight: {w}}}" for s, w in SOURCES]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _torch():
    try:
        import torch

        return torch
    except ImportError:
        return None


def nanogpt_get_batch(data_dir: str, torch):
    """nanoGPT train.py's get_batch for split 'train' on the CPU (device_type 'cpu')."""
    data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
    if torch is not None:
        ix = torch.randint(len(data) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy((data[i:i + BLOCK]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + BLOCK]).astype(np.int64)) for i in ix])
        return x, y
    ix = np.random.randint(len(data) - BLOCK, size=BATCH)
    x = np.stack([(data[i:i + BLOCK]).astype(np.int64) for i in ix])
    y = np.stack([(data[i + 1:i + 1 + BLOCK]).astype(np.int64) for i in ix])
    return x, y


def memmap_windows(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """nanoGPT's idea without its per-batch overheads: random windows of one open memmap, numpy only."""
    ix = rng.integers(len(data) - BLOCK - 1, size=BATCH)
    return np.stack([data[i:i + BLOCK + 1].astype(np.int64) for i in ix.tolist()])


def mixture_get_batch(ds, torch, rng: np.random.Generator):
    """The same batch from the mixture: random sample ids, one (B, seq_len + 1) array, x and y views of it."""
    xy = ds.batch(rng.integers(len(ds), size=BATCH))
    if torch is not None:
        xy = torch.from_numpy(xy)
    return xy[:, :-1], xy[:, 1:]


def bench_reads(work: str, read_tokens: int, rounds: int, seconds: float) -> dict:
    from curate.mixtures import MixtureDataset
    from curate.mixtures.build import build_mixture
    from curate.mixtures.config import load_config

    torch = _torch()
    tokens_dir = os.path.join(work, "tokens")
    write_meta(tokens_dir)
    rng = np.random.default_rng(0)
    parts = []
    for source, weight in SOURCES:
        parts.append(write_source(tokens_dir, source, int(read_tokens * weight), rng, sparse=False))
    data_dir = os.path.join(work, "nanogpt")
    os.makedirs(data_dir)
    np.concatenate(parts).tofile(os.path.join(data_dir, "train.bin"))  # the same tokens, nanoGPT's one file
    del parts
    config = mixture_yaml(os.path.join(work, "read.yaml"), tokens_dir, read_tokens, BLOCK, 4)
    build_mixture(load_config(config), os.path.join(work, "mix-read"))
    ds = MixtureDataset(os.path.join(work, "mix-read"))
    for root, _, names in os.walk(work):  # page cache: both read once before timing
        for name in names:
            if name.endswith((".bin", ".npy")):
                with open(os.path.join(root, name), "rb") as f:
                    while f.read(1 << 24):
                        pass
    assert mixture_get_batch(ds, torch, rng)[0].shape == nanogpt_get_batch(data_dir, torch)[0].shape == (BATCH, BLOCK)
    data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
    names = ("nanogpt", "mixture", "windows", "mixture_numpy")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, fn in (("nanogpt", lambda: nanogpt_get_batch(data_dir, torch)),
                         ("mixture", lambda: mixture_get_batch(ds, torch, rng)),
                         ("windows", lambda: memmap_windows(data, rng)),
                         ("mixture_numpy", lambda: ds.batch(rng.integers(len(ds), size=BATCH)))):
            batches, started, cpu_started = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - started < seconds:
                fn()
                batches += 1
            wall[name].append(batches * BATCH / (time.perf_counter() - started))
            cpu[name].append(batches * BATCH / max(time.process_time() - cpu_started, 1e-9))

    def ratio(rates: dict, base: str, ours: str) -> float:
        return round(statistics.median(m / b for m, b in zip(rates[ours], rates[base])), 3)

    return {"tokens": read_tokens, "samples_in_mixture": len(ds), "stack": "torch" if torch else "numpy",
            "rounds": rounds, "seconds_per_round": seconds,
            "samples_per_s_wall": {name: round(statistics.median(wall[name])) for name in names},
            "samples_per_cpu_s": {name: round(statistics.median(cpu[name])) for name in names},
            "ratio_vs_nanogpt_get_batch": {"wall": ratio(wall, "nanogpt", "mixture"),
                                           "cpu": ratio(cpu, "nanogpt", "mixture")},
            "ratio_vs_bare_memmap_windows": {"wall": ratio(wall, "windows", "mixture_numpy"),
                                             "cpu": ratio(cpu, "windows", "mixture_numpy")},
            "bare_ratios_per_round_cpu": [round(m / b, 3) for m, b in zip(cpu["mixture_numpy"], cpu["windows"])]}


def bench_build(work: str, build_tokens: int, available: int) -> dict:
    tokens_dir = os.path.join(work, "tokens-sparse")
    write_meta(tokens_dir)
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    for source, weight in SOURCES:
        write_source(tokens_dir, source, int(available * weight), rng, sparse=True, mean=1000)
    setup = time.perf_counter() - started
    epochs = build_tokens / available * 1.5
    config = mixture_yaml(os.path.join(work, "build.yaml"), tokens_dir, build_tokens, 2048, round(epochs, 2))
    child = subprocess.run([sys.executable, "-c", (
        "import json, time, sys\n"
        "def hwm():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's across exec)\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024\n"
        "from curate.mixtures.build import build_mixture\n"
        "from curate.mixtures.config import load_config\n"
        "imports = hwm()\n"
        "t, cpu = time.perf_counter(), time.process_time()\n"
        f"meta = build_mixture(load_config({config!r}), {os.path.join(work, 'mix-build')!r})\n"
        "print(json.dumps({'wall_s': round(time.perf_counter() - t, 2),"
        " 'cpu_s': round(time.process_time() - cpu, 2), 'steps_s': meta['build']['seconds'],"
        " 'samples': meta['train_samples'], 'rss_after_imports_mb': round(imports),"
        " 'peak_rss_mb': round(hwm())}))\n")],
        capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(child.stderr)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    index_mb = sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(os.path.join(work, "mix-build"))
                   for n in ns) / 1e6
    return {"budget_tokens": build_tokens, "available_tokens": available, "documents": None, **result,
            "index_mb": round(index_mb), "setup_s": round(setup, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--read-tokens", default="100M", help="Tokens in the read benchmark (default 100M).")
    parser.add_argument("--build-tokens", default="10B", help="Budget of the build benchmark (default 10B).")
    parser.add_argument("--available", default="2.5B", help="Tokens the sparse sources hold (default 2.5B).")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--seconds", type=float, default=0.5, help="Per round and reader.")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-reads", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mixture-bench-") as work:
        reads = None
        if not args.skip_reads:
            reads = bench_reads(work, parse_tokens(args.read_tokens, file=None, key="--read-tokens"), args.rounds,
                                args.seconds)
            print(json.dumps({"reads": reads}, indent=2), flush=True)
        if not args.skip_build:
            build = bench_build(work, parse_tokens(args.build_tokens, file=None, key="--build-tokens"),
                                parse_tokens(args.available, file=None, key="--available"))
            build["documents"] = sum(len(pq.read_metadata(os.path.join(r, n)).schema) and
                                     pq.read_metadata(os.path.join(r, n)).num_rows
                                     for r, _, ns in os.walk(os.path.join(work, "tokens-sparse"))
                                     for n in ns if n.endswith(".docs.parquet"))
            print(json.dumps({"build": build}, indent=2), flush=True)
    if reads is None:
        return
    cpu, wall = reads["samples_per_cpu_s"], reads["samples_per_s_wall"]
    print(f"reads per CPU-second: mixture {cpu['mixture']:,} samples vs nanoGPT's get_batch {cpu['nanogpt']:,} "
          f"({reads['ratio_vs_nanogpt_get_batch']['cpu']}x); numpy only, MixtureDataset.batch "
          f"{cpu['mixture_numpy']:,} vs bare memmap windows {cpu['windows']:,} "
          f"({reads['ratio_vs_bare_memmap_windows']['cpu']}x); by wall clock "
          f"{reads['ratio_vs_nanogpt_get_batch']['wall']}x and {reads['ratio_vs_bare_memmap_windows']['wall']}x "
          f"(goal >= 0.8x; mixture {wall['mixture']:,} samples/s)")

if __name__ == "__main__":
    main()
