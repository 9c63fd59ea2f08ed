"""The extract stage on real pages (../shared/data/html_extraction, ../shared/data/warc)."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter

import pyarrow as pa
import pytest

from curate.params import ConfigError
from curate.readers import Task
from curate.readers.warc import WarcReader, WetReader
from curate.stage import stage_class
from curate.stages.extract import Extract, ExtractParams, page_title

SCRAPINGHUB = "html_extraction/scrapinghub-article-extraction-benchmark"
_TITLE_TAG = re.compile(r"<title[^>]*>.*?</title\s*>", re.I | re.S)


def words(text: str) -> Counter:
    return Counter(re.findall(r"\w+", text.lower()))


@pytest.fixture(scope="module")
def articles(shared_data):
    truth = json.loads((shared_data / SCRAPINGHUB / "ground-truth.json").read_text())
    ids = sorted(truth)[:6]
    folder = shared_data / SCRAPINGHUB / "html"
    htmls = [gzip.decompress((folder / f"{i}.html.gz").read_bytes()).decode("utf-8", "replace") for i in ids]
    return htmls, [truth[i]["articleBody"] for i in ids]


def html_table(htmls: list[str | None], texts: list[str | None] | None = None) -> pa.Table:
    n = len(htmls)
    return pa.table({"id": pa.array([str(i) for i in range(n)], pa.string()),
                     "source": pa.array(["t"] * n, pa.string()),
                     "text": pa.array(texts or [None] * n, pa.string()), "url": pa.nulls(n, pa.string()),
                     "path": pa.nulls(n, pa.string()), "html": pa.array(htmls, pa.string())})


def run(stage: Extract, table: pa.Table):
    stage.ensure_setup()
    result = stage.process(table)
    return result.table, list(result.reasons.to_pylist()) if result.reasons is not None else [None] * table.num_rows


def test_registered():
    assert stage_class("extract") is Extract


@pytest.mark.parametrize("extractor,min_recall", [("trafilatura", 0.8), ("resiliparse", 0.8)])
def test_extracts_article_text_and_title(articles, extractor, min_recall):
    htmls, bodies = articles
    table, reasons = run(Extract(ExtractParams(extractor=extractor)), html_table(htmls))
    assert reasons == [None] * len(htmls)
    assert "html" not in table.column_names and table.schema.field("title").type == pa.string()
    for text, body in zip(table["text"].to_pylist(), bodies):
        got, want = words(text), words(body)
        assert sum((got & want).values()) / sum(want.values()) >= min_recall
    assert all(t for t in table["title"].to_pylist())
    assert all(s is not None and s >= 0 for s in table["extract_seconds"].to_pylist())


def test_no_main_content_and_passthrough():
    table = html_table(["<html><body><script>var x = 1;</script></body></html>", None, "<html><body></body></html>"],
                       texts=[None, "already text", None])
    table, reasons = run(Extract(ExtractParams(timeout_s=0)), table)
    assert reasons == ["no-main-content", None, "no-main-content"]
    assert table["text"].to_pylist()[1] == "already text" and table["text"].null_count == 0


def test_tables_without_html_pass_through_unchanged(shared_data):
    batch = next(iter(WetReader("wet").read(Task("wet", "wet", str(shared_data / "warc/cc_net/sample.warc.wet")))))
    stage = Extract()
    stage.ensure_setup()
    result = stage.process(batch.docs)
    assert result.table["text"].to_pylist() == batch.docs["text"].to_pylist()
    assert result.table["title"].null_count == batch.docs.num_rows


def test_empty_batch_has_the_same_types(articles):
    stage = Extract(ExtractParams(timeout_s=0, only_languages=["en"]))
    full, _ = run(stage, html_table(articles[0][:1]))
    empty, reasons = run(stage, html_table([]))
    assert empty.schema == full.schema and reasons == []


def test_pathological_page_times_out_and_the_next_pages_are_kept(articles):
    # ~10 s of trafilatura work on an idle core; the limit leaves good pages a wide margin on a loaded machine
    slow = "<html><body>" + "".join(f"<div><p>paragraph {i} with several words in it</p><a href='x'>l</a></div>"
                                    for i in range(100_000)) + "</body></html>"
    params = ExtractParams(timeout_s=2.0, max_html_chars=len(slow) + 1)
    table, reasons = run(Extract(params), html_table([articles[0][0], slow, articles[0][1]]))
    assert reasons == [None, "extract-timeout", None]
    texts = table["text"].to_pylist()
    assert texts[1] == "" and len(texts[0]) > 200 and len(texts[2]) > 200


def test_a_timeout_inside_a_chunk_handed_over_during_the_precheck(articles):
    """With the pre-check on, pages go to the sandbox chunk by chunk while the next are checked (here one page
    a chunk): a page over the limit still costs only itself, and every page's text lands in its own row."""
    slow = "<html><body>" + "".join(f"<div><p>paragraph {i} with several words in it</p><a href='x'>l</a></div>"
                                    for i in range(100_000)) + "</body></html>"
    params = ExtractParams(timeout_s=2.0, max_html_chars=len(slow) + 1, only_languages=["en"])
    htmls = [articles[0][0], slow, articles[0][1], articles[0][2]]
    alone, _ = run(Extract(ExtractParams(timeout_s=0)), html_table([h for h in htmls if h is not slow]))
    stage = Extract(params)
    stage.overlap_pages = 1
    table, reasons = run(stage, html_table(htmls))
    assert reasons == [None, "extract-timeout", None, None]
    texts = table["text"].to_pylist()
    assert texts[1] == "" and [texts[0], texts[2], texts[3]] == alone["text"].to_pylist()


def test_oversized_html_is_rejected_before_parsing():
    table, reasons = run(Extract(ExtractParams(max_html_chars=1000, timeout_s=0)), html_table(["<p>" + "x" * 5000]))
    assert reasons == ["html-too-large"]


def test_language_precheck(shared_data, articles):
    page_path = shared_data / "html_extraction/mozilla-readability-test-pages/gmw/source.html.gz"
    chinese = gzip.decompress(page_path.read_bytes())
    table = html_table([articles[0][0], chinese.decode("utf-8")])
    out, reasons = run(Extract(ExtractParams(only_languages=["zh"], timeout_s=0, precheck_trust_title=False)), table)
    assert reasons == ["language-precheck", None]
    assert out["precheck_lang"].to_pylist() == ["en", "zh"] and len(out["text"][1].as_py()) > 100
    # the Chinese page's title reads as Chinese: it goes to extraction without the check
    out, reasons = run(Extract(ExtractParams(only_languages=["zh"], timeout_s=0)), table)
    assert reasons == ["language-precheck", None]
    assert out["precheck_lang"].to_pylist() == ["en", None] and out["text"][1].as_py() == \
        run(Extract(ExtractParams(timeout_s=0)), table)[0]["text"][1].as_py()
    _, keep_all = run(Extract(ExtractParams(only_languages=["zh", "en"], timeout_s=0)), table)
    assert keep_all == [None, None]


@pytest.mark.parametrize("title, html_lang, vouched", [
    ("Search results", None, True),          # lid.176: en 0.87 on the title alone
    ("Contact us", None, False),             # en 0.32: too unsure to skip the check on
    ("Contact us", "en-US", True),           # ... unless <html lang> names a kept language too
    ("Startseite", "en", False),             # lang="en" of a template, a German title: checked
    (None, "en", False),                     # no title: checked
])
def test_what_lets_a_page_skip_the_precheck(title, html_lang, vouched):
    from curate.stages.extract import LanguagePrecheck

    attr = f' lang="{html_lang}"' if html_lang else ""
    head = f"<title>{title}</title>" if title else ""
    html = f"<!DOCTYPE html><html{attr}><head>{head}</head><body><p>x</p></body></html>"
    assert LanguagePrecheck(["en", "zh"], 0.65).vouched(html, page_title(html)) is vouched


def test_a_title_lets_a_page_through_but_never_drops_it(shared_data):
    """German pages given an English title and lang="en" skip the pre-check; the langid stage drops
    them on their extracted text. With the title not trusted, the pre-check drops them itself."""
    from curate.stages.langid import LangId

    folder = shared_data / "html_extraction/trafilatura-eval/html"
    german = []
    for path in sorted(folder.glob("*.html.gz")):
        html = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        if re.search(r'<html[^>]*lang="de', html[:5000]) and _TITLE_TAG.search(html):
            german.append(_TITLE_TAG.sub("<title>Search results for the latest news</title>", html, count=1)
                          .replace('lang="de', 'lang="en', 1))
        if len(german) == 4:
            break
    assert len(german) == 4
    trusted, reasons = run(Extract(ExtractParams(only_languages=["en"], timeout_s=0)), html_table(german))
    assert reasons == [None] * 4 and trusted["precheck_lang"].to_pylist() == [None] * 4
    langid = LangId.from_config({"languages": ["en"]})
    langid.ensure_setup()
    assert set(langid.process(trusted).reasons.to_pylist()) == {"langid:not-allowed"}
    _, checked = run(Extract(ExtractParams(only_languages=["en"], timeout_s=0, precheck_trust_title=False)),
                     html_table(german))
    assert checked == ["language-precheck"] * 4


def test_params_are_validated():
    with pytest.raises(ConfigError, match="extract.extractor"):
        Extract.from_config({"extractor": "boilerpipe"})
    with pytest.raises(ConfigError, match="extract.timeout_s"):
        Extract.from_config({"timeout_s": -1})
    assert Extract.from_config({"favor": "precision"}).params.favor == "precision"


def test_title_is_unescaped():
    assert page_title("<html><head><title>\n A &amp; B  </title></head></html>") == "A & B"
    assert page_title("<html><body>no title</body></html>") is None


def test_warc_to_text_in_a_ray_worker(shared_data):
    """The stage pickled to a Ray worker: the sandbox starts there, pages come back as text."""
    ray = pytest.importorskip("ray")
    path = str(shared_data / "warc/resiliparse/warcfile.warc.gz")
    docs = next(iter(WarcReader("cc").read(Task("cc", "warc", path)))).docs
    stage = Extract()

    @ray.remote
    def extract(stage, table):
        stage.ensure_setup()
        result = stage.process(table)
        return result.table, result.reasons

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a stray cluster
    try:
        table, reasons = ray.get(extract.remote(stage, docs))
    finally:
        ray.shutdown()
    kept = [t for t, r in zip(table["text"].to_pylist(), reasons.to_pylist()) if r is None]
    assert len(kept) >= 10 and all(t.strip() for t in kept)
    assert set(reasons.to_pylist()) <= {None, "no-main-content"}


def test_rows_that_already_have_text_keep_their_title_and_text():
    """Books carry the Gutenberg title from their reader; extract passes such rows through unchanged."""
    import pyarrow as pa

    from curate.stages.extract import Extract

    stage = Extract.from_config({"timeout_s": 0})
    stage.ensure_setup()
    books = pa.table({"id": ["b"], "source": ["books"], "text": [" "], "title": ["Moby Dick"]})
    result = stage.process(books)
    assert result.table["title"].to_pylist() == ["Moby Dick"] and result.table["text"].to_pylist() == [" "]
    mixed = pa.table({"id": ["b", "w"], "source": ["books", "web"], "text": [" ", None], "title": ["Moby Dick", None],
                      "html": [None, "<html><head><title>T</title></head><body><p>" + "Some words here. " * 40
                               + "</p></body></html>"]})
    result = stage.process(mixed)
    assert result.table["title"].to_pylist()[0] == "Moby Dick"
    assert result.table["text"].to_pylist()[0] == " " and result.reasons.to_pylist()[0] is None


def test_precheck_inherits_the_languages_langid_keeps():
    """extract's pre-check is on by default where the pipeline's langid keeps a list of languages."""
    from curate.config import StageSpec
    from curate.stages.extract import inherit_precheck_languages

    def extract_params(*specs):
        return inherit_precheck_languages(list(specs))[0].params

    assert extract_params(StageSpec("extract"), StageSpec("langid")) == {"only_languages": ["en", "zh"]}
    assert extract_params(StageSpec("extract"), StageSpec("length"),
                          StageSpec("langid", {"languages": ["fr"]})) == {"only_languages": ["fr"]}
    assert extract_params(StageSpec("extract", {"only_languages": []}), StageSpec("langid")) == {"only_languages": []}
    assert extract_params(StageSpec("extract"), StageSpec("langid", {"languages": "all"})) == {}
    assert extract_params(StageSpec("extract"), StageSpec("langid", sources=["web"])) == {}
    assert extract_params(StageSpec("extract"), StageSpec("langid", skip_sources=["books"])) == {}
    assert extract_params(StageSpec("extract")) == {}


def test_precheck_drops_only_pages_the_language_stage_rejects(shared_data):
    """On real multilingual pages: every page the pre-check drops, the full path (trafilatura, then
    the langid stage's decision on the main text) rejects too, and what the pre-check keeps is
    extracted exactly as without it."""
    from curate.stages.langid import LangId

    folder = shared_data / "html_extraction/trafilatura-eval/html"
    htmls = [gzip.decompress(p.read_bytes()).decode("utf-8", "replace") for p in sorted(folder.glob("*.html.gz"))[:40]]
    table = html_table(htmls)
    checked, pre_reasons = run(Extract(ExtractParams(only_languages=["en", "zh"], timeout_s=0)), table)
    full, full_reasons = run(Extract(ExtractParams(timeout_s=0)), table)
    langid = LangId()
    langid.ensure_setup()
    verdicts = langid.process(full.filter(pa.array([r is None for r in full_reasons]))).reasons.to_pylist()
    kept_full = [i for i, r in enumerate(full_reasons) if r is None]
    full_keeps = {i for i, v in zip(kept_full, verdicts) if v is None}
    dropped = {i for i, r in enumerate(pre_reasons) if r == "language-precheck"}
    assert len(dropped) >= 5  # the sample holds pages in other languages: the check has something to do
    assert not dropped & full_keeps
    others = [i for i in range(len(htmls)) if i not in dropped]
    assert [checked["text"][i].as_py() for i in others] == [full["text"][i].as_py() for i in others]
