"""Extraction quality: token-level precision / recall / F1 against ../shared/data/html_extraction.

Scrapinghub set: bag of word tokens of the extracted text vs the human ``articleBody``,
P and R per page, averaged over pages, F1 of the averages (as the article-extraction-benchmark
reports). trafilatura eval set: a ``with`` snippet found is a TP, missing a FN, a ``without``
snippet found a FP. Also reports pages/s per core (single process, no sandbox).

    .venv/bin/python -m curate.benchmarks.extraction_quality [--data ../shared/data/html_extraction]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from curate.stages.extract import ExtractParams, extract_text

_TOKEN = re.compile(r"\w+", re.U)

CONFIGS = {
    "trafilatura default (extract(html))": None,
    "curate default": ExtractParams(),
    "curate, fast=False": replace(ExtractParams(), fast=False),
    "curate, favor=precision": replace(ExtractParams(), favor="precision"),
    "curate, favor=recall": replace(ExtractParams(), favor="recall"),
    "resiliparse": replace(ExtractParams(), extractor="resiliparse"),
    # what datatrove's Trafilatura step asks for: favor precision, no comments, fallbacks on
    "datatrove's Trafilatura settings": replace(ExtractParams(), fast=False, favor="precision"),
}


def tokens(text: str) -> Counter:
    return Counter(_TOKEN.findall(text.lower()))


def run(config: ExtractParams | None, html: str) -> str:
    if config is None:
        import trafilatura

        return trafilatura.extract(html) or ""
    return extract_text(html, config)


def scrapinghub(data: Path, config) -> dict:
    truth = json.loads((data / "scrapinghub-article-extraction-benchmark/ground-truth.json").read_text())
    precisions, recalls, seconds = [], [], 0.0
    for page_id, item in sorted(truth.items()):
        html = gzip.decompress((data / f"scrapinghub-article-extraction-benchmark/html/{page_id}.html.gz").read_bytes())
        html_text = html.decode("utf-8", "replace")
        started = time.perf_counter()
        got = tokens(run(config, html_text))
        seconds += time.perf_counter() - started
        want = tokens(item["articleBody"])
        common = sum((got & want).values())
        precisions.append(common / sum(got.values()) if got else 0.0)
        recalls.append(common / sum(want.values()) if want else 0.0)
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return {"P": p, "R": r, "F1": 2 * p * r / (p + r) if p + r else 0.0, "pages_s": len(truth) / seconds}


def trafilatura_eval(data: Path, config) -> dict:
    items = json.loads((data / "trafilatura-eval/evaldata.json").read_text())
    tp = fp = fn = 0
    seconds = 0.0
    for item in items.values():
        html = gzip.decompress((data / "trafilatura-eval" / item["file"]).read_bytes()).decode("utf-8", "replace")
        started = time.perf_counter()
        text = " ".join(run(config, html).split())
        seconds += time.perf_counter() - started
        for snippet in item.get("with") or []:
            if " ".join(snippet.split()) in text:
                tp += 1
            else:
                fn += 1
        fp += sum(1 for snippet in item.get("without") or [] if " ".join(snippet.split()) in text)
    p, r = tp / (tp + fp), tp / (tp + fn)
    return {"P": p, "R": r, "F1": 2 * p * r / (p + r), "pages_s": len(items) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/html_extraction"))
    parser.add_argument("--sets", default="scrapinghub,trafilatura")
    args = parser.parse_args()
    data = Path(args.data)
    print(f"{'config':40s} {'set':12s} {'P':>6s} {'R':>6s} {'F1':>6s} {'pages/s':>8s}")
    baseline = {}
    for name, config in CONFIGS.items():
        for set_name, scorer in (("scrapinghub", scrapinghub), ("trafilatura", trafilatura_eval)):
            if set_name not in args.sets:
                continue
            result = scorer(data, config)
            baseline.setdefault(set_name, result["pages_s"])
            ratio = result["pages_s"] / baseline[set_name]
            print(f"{name:40s} {set_name:12s} {result['P']:6.3f} {result['R']:6.3f} {result['F1']:6.3f} "
                  f"{result['pages_s']:8.1f}  ({ratio:.2f}x trafilatura default)", flush=True)


if __name__ == "__main__":
    main()
