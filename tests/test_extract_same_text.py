"""The extract stage's speed-ups change no text: every page of ../shared/data/html_extraction and of the
WARC files in ../shared/data/warc, extracted by the stage as a run does it (default parameters, in its
tuned sandbox, fed while the language pre-check runs), must give exactly what plain ``trafilatura.extract``
gives with the same settings in an untouched process."""

from __future__ import annotations

import gzip
import pickle
import subprocess
import sys

import pyarrow as pa
import pytest

from curate.readers import Task
from curate.readers.warc import ArcReader, WarcReader
from curate.stages.extract import Extract, ExtractParams

#: plain trafilatura in a fresh interpreter (nothing of the stage's tuning can leak into it): pages on
#: stdin as a pickled list, texts back on stdout as a pickled list
REFERENCE = r"""
import pickle, sys
import trafilatura
params = pickle.loads(sys.stdin.buffer.read())
pages = params.pop("pages")
out = [(trafilatura.extract(html, deduplicate=False, output_format="txt", with_metadata=False, **params) or "").strip()
       for html in pages]
sys.stdout.buffer.write(pickle.dumps(out))
"""


def all_pages(shared_data) -> list[tuple[str, str]]:
    """(name, html) of every page: the html_extraction files and each HTML response the WARC/ARC readers yield."""
    pages = []
    for path in sorted((shared_data / "html_extraction").rglob("*.html.gz")):
        if path.name != "expected.html.gz":
            pages.append((str(path.relative_to(shared_data)), gzip.decompress(path.read_bytes()).decode("utf-8", "replace")))
    for path in sorted((shared_data / "warc").rglob("*")):
        if not path.is_file() or not (".warc" in path.name or ".arc" in path.name) or ".wet" in path.name:
            continue
        reader = ArcReader("w") if ".arc" in path.name else WarcReader("w")
        for batch in reader.read(Task("w", "warc", str(path))):
            docs = batch.docs
            if "html" in docs.column_names:
                pages += [(f"{path.relative_to(shared_data)}:{i}", h)
                          for i, h in zip(docs["id"].to_pylist(), docs["html"].to_pylist()) if h is not None]
    return pages


def test_the_stage_extracts_what_plain_trafilatura_extracts(shared_data):
    """With the language pre-check on (its default in a pipeline with langid), pages that pass it go to the
    sandbox in chunks while the next pages are checked; the pages it drops are extracted by a second stage
    without it. Every page's text must equal plain trafilatura's, in its own row."""
    pages = all_pages(shared_data)
    assert len(pages) >= 600  # 304 html_extraction pages and ~315 WARC/ARC responses
    params = ExtractParams(timeout_s=30.0, max_html_chars=10**8)  # no page may be cut off by a limit here

    def extract(htmls: list[str], **extra) -> tuple[list[str], list[str | None]]:
        stage = Extract(ExtractParams(**{**params.__dict__, **extra}))
        stage.ensure_setup()
        n = len(htmls)
        table = pa.table({"id": [str(i) for i in range(n)], "source": ["t"] * n, "text": pa.nulls(n, pa.string()),
                          "html": htmls})
        result = stage.process(table)
        return result.table["text"].to_pylist(), result.reasons.to_pylist()

    got, reasons = extract([html for _, html in pages], only_languages=["en", "zh"])
    dropped = [i for i, r in enumerate(reasons) if r == "language-precheck"]
    assert len(dropped) >= 50 and len(pages) - len(dropped) > 10 * Extract.overlap_pages  # both paths have work
    for i, text in zip(dropped, extract([pages[i][1] for i in dropped])[0]):
        got[i] = text

    settings = {"fast": params.fast, "favor_precision": params.favor == "precision",
                "favor_recall": params.favor == "recall", "include_tables": params.include_tables,
                "include_comments": params.include_comments, "pages": [html for _, html in pages]}
    done = subprocess.run([sys.executable, "-c", REFERENCE], input=pickle.dumps(settings), capture_output=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    want = pickle.loads(done.stdout)
    differ = [name for (name, _), a, b in zip(pages, got, want) if a != b]
    assert not differ, f"{len(differ)} pages differ from plain trafilatura, e.g. {differ[:5]}"
    assert sum(1 for t in want if t) >= 500  # most pages have main text: the comparison is not of empty strings


def test_the_tuning_is_in_the_sandbox_only():
    """trafilatura's parser is tuned inside the sandbox process, never in the worker's own."""
    from trafilatura.utils import HTML_PARSER

    stage = Extract(ExtractParams())
    stage.ensure_setup()
    table = pa.table({"id": ["0"], "source": ["t"], "text": pa.nulls(1, pa.string()),
                      "html": ["<html><body><form><p>" + "Words in a form. " * 30 + "</p></form></body></html>"]})
    assert stage.process(table).table["text"].to_pylist()[0].startswith("Words in a form.")
    assert type(HTML_PARSER.makeelement("form")).__name__ == "FormElement"  # lxml.html's own lookup, untouched here
