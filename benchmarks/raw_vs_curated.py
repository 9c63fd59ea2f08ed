"""Raw vs curated on real data: does the default pipeline give a better small model at the same token budget?

    python -m curate.benchmarks.raw_vs_curated                          # ~15 min on 2 shared cores
    python -m curate.benchmarks.raw_vs_curated --tokens 65536 --seeds 2  # a quick look

Every step is the command a user runs (``curate run``, ``curate tokenizer train``, ``curate tokenize``,
``curate ablate``), started as a child process from the real data in ``../shared/data``:

1. **Inputs.** Web: every WARC, ARC and WET file of ``warc/`` (real Common Crawl captures and library
   fixtures, broken files included; WAT files hold no text). English books: four of the six Gutenberg books.
   Chinese: the two Gutenberg books (吶喊, 西遊記) and half of the CMRC 2018 Wikipedia passages.
2. **Held out of both** (never read by either pipeline): the chapters of the other two English books
   (Alice's Adventures in Wonderland, Frankenstein; Gutenberg header and licence removed) and the other half
   of the Wikipedia passages. These are the evaluation texts: clean reference text, one document per
   chapter or passage.
3. **Two corpora from the same inputs.** *raw*: ``curate run`` with the extraction stage only. *curated*:
   the default pipeline, routed per input format as ``curate run --input … --format …`` routes it (books
   skip C4 and FineWeb's line rules), with dedup across all inputs.
4. **One tokenizer** (``curate tokenizer train`` on the raw output, which holds every text either corpus
   holds), both corpora tokenized with it.
5. **Two mixtures with the same recipe**: the same components (web, English books, Chinese) and the same
   weights, so the only difference is which documents each component holds. Built by ``curate ablate``
   with the ablation's budget.
6. ``curate ablate raw=… curated=… --preset tiny --seeds 3`` and the two held-out sets.

The baseline is the raw mixture, measured in the same run; the figure is the curated model's held-out
loss over the raw model's (and the difference with its interval over seeds), per language.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from curate.readers.books import normalize_newlines, strip_gutenberg

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
TRAIN_BOOKS = ["pg1342-0.txt", "pg1661-8.txt", "pg972.txt", "pg9198-8.txt"]
HELDOUT_BOOKS = ["pg11-0.txt", "pg84-0.txt"]
CHAPTER = re.compile(r"^(?:CHAPTER [IVXLC]+\.?.*|Chapter \d+|Letter \d+)\s*$", re.MULTILINE)
#: The recipe both mixtures follow: component, sources, weight.
COMPONENTS = [("web", ["web-warc", "web-arc", "web-wet"], 0.4), ("books-en", ["books"], 0.3),
              ("zh", ["zh-books", "zh-wiki"], 0.3)]
WEB_FORMATS = {"warc": ["*.warc.gz", "*.warc"], "arc": ["*.arc", "*.arc.gz"], "wet": ["*.wet", "*.wet.gz"]}


def curate(*args: str, log: Path) -> float:
    """Run ``curate ARGS``; its output goes to ``log``; the seconds it took. A failure stops the benchmark."""
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ curate {' '.join(args)}\n")
        f.flush()
        code = subprocess.call([str(Path(sys.executable).parent / "curate"), *args], stdout=f, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f"curate {args[0]} failed with exit code {code}; see {log}")
    return time.perf_counter() - started


def chapters(path: Path) -> list[str]:
    """A Gutenberg book's chapters: the body between the markers, cut at chapter headings (the contents
    list, whose headings are a line apart, gives pieces too short to keep)."""
    text = normalize_newlines(path.read_bytes().decode("utf-8-sig"))
    body, _ = strip_gutenberg(text)
    cuts = [m.start() for m in CHAPTER.finditer(body)] + [len(body)]
    return [body[a:b].strip() for a, b in zip(cuts, cuts[1:]) if len(body[a:b].strip()) > 2000]


def prepare_inputs(work: Path, chapter_chars: int, n_passages: int) -> dict:
    """Training inputs and held-out texts under ``work`` (links and small JSONL files; nothing in the repo).

    Scoring costs a third of training per token, so the held-out sets are bounded: each chapter's first
    ``chapter_chars`` characters (cut at a paragraph end), and ``n_passages`` of the held-out passages.
    """
    inputs, heldout = work / "inputs", work / "heldout"
    for folder in (inputs / "books", inputs / "zh-books", heldout):
        folder.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_BOOKS:
        (inputs / "books" / name).symlink_to(DATA / "books" / "gutenberg" / name)
    for path in sorted((DATA / "chinese" / "gutenberg-zh").glob("*.txt")):
        (inputs / "zh-books" / path.name).symlink_to(path)
    passages = [json.loads(line) for line in open(DATA / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl",
                                                  encoding="utf-8") if line.strip()]
    passages.sort(key=lambda p: hashlib.sha1(p["text"].encode()).hexdigest())
    train, held = passages[0::2], passages[1::2]
    with open(inputs / "zh-wiki.jsonl", "w", encoding="utf-8") as f:
        for p in train:
            f.write(json.dumps({"id": f"cmrc-{p['id']}", "text": p["text"]}, ensure_ascii=False) + "\n")
    with open(heldout / "wiki-zh.jsonl", "w", encoding="utf-8") as f:
        for p in held[:n_passages]:
            f.write(json.dumps({"id": f"cmrc-{p['id']}", "text": p["text"]}, ensure_ascii=False) + "\n")
    books = [(name, k, text) for name in HELDOUT_BOOKS
             for k, text in enumerate(chapters(DATA / "books" / "gutenberg" / name))]
    with open(heldout / "books-en.jsonl", "w", encoding="utf-8") as f:
        for name, k, text in books:
            cut = text.rfind("\n\n", 0, chapter_chars)
            opening = text[:cut if cut > chapter_chars // 2 else chapter_chars]
            f.write(json.dumps({"id": f"{name}-chapter-{k}", "text": opening}) + "\n")
    web = {fmt: sorted(p for pattern in patterns for p in glob.glob(str(DATA / "warc" / "*" / pattern)))
           for fmt, patterns in WEB_FORMATS.items()}
    return {"web": web, "books": str(inputs / "books"), "zh-books": str(inputs / "zh-books"),
            "zh-wiki": str(inputs / "zh-wiki.jsonl"), "heldout_books": str(heldout / "books-en.jsonl"),
            "heldout_wiki": str(heldout / "wiki-zh.jsonl"), "chapters": len(books),
            "passages": min(n_passages, len(held)),
            "train_passages": len(train)}


def pipeline(inputs: dict, curated: bool) -> dict:
    """The pipeline file: extraction only, or the default stages routed per input format as the shortcut does."""
    from curate.config import DEFAULT_STAGES, FORMAT_STAGES

    entries = [{"source": f"web-{fmt}", "format": fmt, "paths": paths} for fmt, paths in inputs["web"].items() if paths]
    entries += [{"source": "books", "format": "txt", "paths": [inputs["books"]], "options": {"chunk_chars": 20000}},
                {"source": "zh-books", "format": "txt", "paths": [inputs["zh-books"]],
                 "options": {"chunk_chars": 20000}},
                {"source": "zh-wiki", "format": "jsonl", "paths": [inputs["zh-wiki"]]}]
    if not curated:
        return {"inputs": entries, "stages": ["extract"]}
    stages = []
    for name in DEFAULT_STAGES:
        users = [e["source"] for e in entries if name in FORMAT_STAGES[e["format"]]]
        if not users:
            continue
        skip = sorted({e["source"] for e in entries} - set(users))
        stages.append({name: {"skip_sources": skip}} if skip else name)
    return {"inputs": entries, "stages": stages}


def mixture_file(tokens: Path, max_epochs: float) -> dict:
    """The recipe as a mixture file; `curate ablate` replaces its budget with the ablation's."""
    return {"tokens": "1M", "seq_len": 256, "seed": 1, "max_epochs": max_epochs, "paths": [str(tokens)],
            "components": [{"name": name, "source": sources, "weight": weight} for name, sources, weight in COMPONENTS]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/curate-raw-vs-curated", help="Working folder (replaced).")
    parser.add_argument("--tokens", default="131072", help="Training tokens per run (whole steps of 8,192).")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--max-epochs", type=float, default=50.0,
                        help="Repetition cap of every component (the curated web is small).")
    parser.add_argument("--chapter-chars", type=int, default=3000, help="Characters scored of each held-out chapter.")
    parser.add_argument("--passages", type=int, default=60, help="Held-out Wikipedia passages scored.")
    parser.add_argument("--val-samples", type=int, default=32, help="Samples of each mixture's validation split.")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"real data not found at {DATA}")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "log.txt"
    seconds: dict[str, float] = {}
    inputs = prepare_inputs(work, args.chapter_chars, args.passages)
    print(f"held out: the openings ({args.chapter_chars:,} characters) of {inputs['chapters']} chapters of "
          f"{', '.join(HELDOUT_BOOKS)}; {inputs['passages']} Wikipedia passages (the training input has "
          f"{inputs['train_passages']} others)", flush=True)

    for name in ("raw", "curated"):
        config = work / f"{name}.yaml"
        config.write_text(json.dumps(pipeline(inputs, name == "curated"), indent=2))  # JSON is YAML
        seconds[f"run {name}"] = curate("run", str(config), "--output", str(work / name), "--workers", "2",
                                        "--no-progress", log=log)
        print(f"curate run ({name}): {seconds[f'run {name}']:.0f}s", flush=True)
    seconds["tokenizer"] = curate("tokenizer", "train", "--input", str(work / "raw"), "--vocab-size",
                                  str(args.vocab_size), "--output", str(work / "tok"), log=log)
    for name in ("raw", "curated"):
        seconds[f"tokenize {name}"] = curate("tokenize", "--tokenizer", str(work / "tok"), "--input", str(work / name),
                                             "--output", str(work / f"tokens-{name}"), "--workers", "2", log=log)
        (work / f"mix-{name}.yaml").write_text(json.dumps(mixture_file(work / f"tokens-{name}", args.max_epochs)))
    print(f"tokenizer and tokens: {sum(v for k, v in seconds.items() if k.startswith('tok')):.0f}s", flush=True)
    print(corpus_table(work), flush=True)

    ablate = ["ablate", f"raw={work / 'mix-raw.yaml'}", f"curated={work / 'mix-curated.yaml'}",
              "--tokens", args.tokens, "--preset", "tiny", "--seeds", str(args.seeds),
              "--eval", f"books-en={inputs['heldout_books']}", "--eval", f"wiki-zh={inputs['heldout_wiki']}",
              "--output", str(work / "ablation"), "--no-progress",
              "--val-samples", str(args.val_samples), "--set", "global_batch_tokens=8192", "--set", "micro_batch=32",
              "--set", "lr=5e-3", "--set", "warmup_steps=3", "--set", "eval_every=0",
              "--set", "checkpoint_every=8", "--set", "tensorboard=false"]
    seconds["ablate"] = curate(*ablate, log=log)
    body = json.loads((work / "ablation" / "results.json").read_text())
    print(report(body, seconds), flush=True)
    print(f"log: {log}; results: {work / 'ablation' / 'results.parquet'}")


def corpus_table(work: Path) -> str:
    """Documents, bytes and tokens per source in each corpus (from the token folders' stats)."""
    import duckdb

    lines = ["corpus    source      docs        bytes       tokens"]
    for name in ("raw", "curated"):
        rows = duckdb.sql(f"SELECT source, sum(docs), sum(bytes), sum(tokens) FROM "
                          f"'{work / f'tokens-{name}'}/stats/*.parquet' GROUP BY source ORDER BY source").fetchall()
        lines += [f"{name:<9} {s:<10} {d:>6,} {b:>12,} {t:>12,}" for s, d, b, t in rows]
    return "\n".join(lines)


def report(body: dict, seconds: dict) -> str:
    summary = {(r["eval_set"], r["mixture"]): r for r in body["rows"] if r["seed"] is None}
    per_seed = {(r["eval_set"], r["mixture"], r["seed"]): r for r in body["rows"] if r["seed"] is not None}
    lines = [f"tiny model ({body['model']['dim']}x{body['model']['n_layers']}), {body['tokens']:,} tokens per run, "
             f"seeds {body['seeds']}; baseline: raw, measured in the same run"]
    for e in body["eval_sets"]:
        raw, cur = summary[(e["name"], "raw")], summary[(e["name"], "curated")]
        deltas = [per_seed[(e["name"], "curated", k)]["loss"] - per_seed[(e["name"], "raw", k)]["loss"]
                  for k in body["seeds"]]
        seeds = ", ".join(f"{d:+.4f}" for d in deltas)
        lines.append(f"{e['name']:<12} raw {raw['loss']:.4f} (sd {raw['loss_std'] or 0:.4f}, "
                     f"{raw['bits_per_byte']:.4f} bits/byte)  curated {cur['loss']:.4f} "
                     f"(sd {cur['loss_std'] or 0:.4f}, {cur['bits_per_byte']:.4f} bits/byte)  "
                     f"ratio curated/raw {cur['loss'] / raw['loss']:.4f}  delta per seed {seeds}")
        lines.append(f"{'':<12} {cur['verdict']}")
    lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
