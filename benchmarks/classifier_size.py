"""Classifier size against held-out F1: the small default model vs fastText's full table, on real labels.

    .venv/bin/python -m curate.benchmarks.classifier_size [--data ../shared/data] [--seeds 5]

Three labelled sets from ../shared/data:
  * toxicity en: Davidson et al. tweets (hate or offensive = 1), 12,392;
  * toxicity zh: COLD comments (offensive = 1), 6,431;
  * quality: Gutenberg book chunks and Chinese Wikipedia paragraphs (1) against the raw visible text
    (every line, menus and all: what a WET file holds) of the pages in the WARC/ARC files and of the
    html_extraction pages (0), cut into documents of about 2,000 characters;
  * boilerplate: the scrapinghub benchmark's human-checked article bodies (1) against the other visible
    lines of the same pages (0), in documents of about 1,000 characters: a harder, same-site contrast.
Each is trained with ``curate.classifier.train_classifier`` under four settings: the baseline ``--size
large --balance none`` (fastText's 2,000,000 x 64 table, the labels as given: what curate trained before),
and ``small`` / ``oversample`` combinations, on the same seeded held-out split per seed (10% of each
label). Prints mean held-out F1 over the seeds, the difference to the baseline, model MB and seconds.
"""

from __future__ import annotations

import argparse
import csv
import glob
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from curate.classifier import TrainOptions, train_classifier
from curate.tests.corpora import chunk_text, read_text_file

REPO = Path(__file__).resolve().parent.parent


def toxicity(data: Path) -> dict[str, tuple[list[str], list[int]]]:
    with open(data / "toxicity/davidson-en/labeled_data.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    en = ([r["tweet"] for r in rows], [int(r["class"] != "2") for r in rows])
    with open(data / "toxicity/cold-zh/dev.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    zh = ([r["TEXT"] for r in rows], [int(r["label"] == "1") for r in rows])
    return {"toxicity en (Davidson)": en, "toxicity zh (COLD)": zh}


def quality(data: Path) -> tuple[list[str], list[int]]:
    from resiliparse.extract.html2text import extract_plain_text

    from curate.readers import Task, reader_class

    positive = []
    for path in sorted(glob.glob(str(data / "books/gutenberg/*.txt"))):
        positive += chunk_text(read_text_file(path), 2000)[5:-5]  # past the Project Gutenberg header and licence
    with open(data / "chinese/cmrc2018-wikipedia/paragraphs.jsonl", encoding="utf-8") as f:
        positive += [json.loads(line)["text"] for line in f if line.strip()]
    pages = []
    for fmt, pattern in (("warc", "**/*.warc.gz"), ("warc", "**/*.warc"), ("arc", "**/*.arc")):
        for path in sorted(glob.glob(str(data / "warc" / pattern), recursive=True)):
            for batch in reader_class(fmt)("cc").read(Task("cc", fmt, path)):
                if batch.docs is not None and "html" in batch.docs.column_names:
                    pages += [h for h in batch.docs["html"].to_pylist() if h]
    for path in sorted(glob.glob(str(data / "html_extraction/**/*.html.gz"), recursive=True)):
        if not path.endswith("expected.html.gz"):
            pages.append(gzip.open(path, "rb").read().decode("utf-8", "replace"))
    negative = []
    for html in pages:
        try:
            visible = extract_plain_text(html, main_content=False)
        except Exception:
            continue
        negative += [c for c in chunk_text(visible.replace("\n", "\n\n"), 2000) if len(c) >= 200]
    return positive + negative, [1] * len(positive) + [0] * len(negative)


def boilerplate(data: Path) -> tuple[list[str], list[int]]:
    """Article bodies (1) against the rest of the same pages' visible text (0): menus, footers, link lists."""
    from resiliparse.extract.html2text import extract_plain_text

    folder = data / "html_extraction/scrapinghub-article-extraction-benchmark"
    truth = json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))
    positive, negative = [], []
    for page_id, entry in sorted(truth.items()):
        body = entry["articleBody"]
        positive += [c for c in chunk_text(body.replace("\n", "\n\n"), 1000) if len(c) >= 200]
        html = gzip.open(folder / "html" / f"{page_id}.html.gz", "rb").read().decode("utf-8", "replace")
        lines = [line.strip() for line in extract_plain_text(html, main_content=False).splitlines()]
        rest = "\n\n".join(line for line in lines if line and line not in body)
        negative += [c for c in chunk_text(rest, 1000) if len(c) >= 200]
    return positive + negative, [1] * len(positive) + [0] * len(negative)


SETTINGS = (("large", "none"), ("large", "oversample"), ("small", "none"), ("small", "oversample"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", default="", help="Only the sets whose name contains this (e.g. boilerplate).")
    args = parser.parse_args()
    data = Path(args.data)
    sets = toxicity(data)
    sets["quality (books+wiki vs raw crawl)"] = quality(data)
    sets["quality (article body vs page boilerplate)"] = boilerplate(data)
    if args.only:
        sets = {name: value for name, value in sets.items() if args.only in name}
    print("| set | docs (label 1) | setting | held-out F1 (mean of seeds) | vs large/none | model MB | train s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (texts, labels) in sets.items():
            baseline = None
            for size, balance in SETTINGS:
                f1s, seconds = [], []
                for seed in range(args.seeds):
                    started = time.perf_counter()
                    report = train_classifier(texts, labels, os.path.join(tmp, "m.bin"),
                                              TrainOptions(size=size, balance=balance, seed=seed))
                    seconds.append(time.perf_counter() - started)
                    f1s.append(report.f1)
                f1 = float(np.mean(f1s))
                baseline = f1 if baseline is None else baseline
                print(f"| {name} | {len(texts):,} ({sum(labels):,}) | {size}/{balance} | {f1:.4f} "
                      f"(min {min(f1s):.4f}) | {f1 - baseline:+.4f} | {report.model_bytes / 1e6:.1f} | "
                      f"{np.median(seconds):.1f} |", flush=True)


if __name__ == "__main__":
    main()
