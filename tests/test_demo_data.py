"""The demo's raw inputs: built deterministically, parseable, and holding every kind of page they promise."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from curate.demo_data import (
    DEMO_FORMATS,
    EXACT_DUPLICATES,
    GBK_PAGE,
    NO_CONTENT_TYPE,
    REVISITED,
    build_demo_inputs,
    demo_pages,
)
from curate.readers import Task, reader_class
from curate.readers.books import BookReader
from curate.readers.code import CodeReader

PII = ["jane.doe@example.com", "+1 (415) 555-0132", "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32",
       "13812345678", "11010519491231002X", "zhang.wei@example.cn"]
TOXIC = ["idiot", "fucking", "傻逼", "操你妈"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, str]:
    return build_demo_inputs(str(tmp_path_factory.mktemp("demo")))


@pytest.fixture(scope="module")
def records(demo) -> list[dict]:
    out = []
    with open(demo["web"], "rb") as f:
        for record in ArchiveIterator(f):
            out.append({
                "type": record.rec_type,
                "url": record.rec_headers.get_header("WARC-Target-URI"),
                "id": record.rec_headers.get_header("WARC-Record-ID"),
                "digest": record.rec_headers.get_header("WARC-Payload-Digest"),
                "content_type": record.http_headers.get_header("Content-Type") if record.http_headers else None,
                "payload": record.content_stream().read(),
            })
    return out


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_and_small(demo, tmp_path):
    root = Path(demo["web"]).parent
    again = build_demo_inputs(str(tmp_path / "again"))
    assert set(again) == set(DEMO_FORMATS)
    first, second = _digests(root), _digests(tmp_path / "again")
    assert first == second and len(first) > 15
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 1_000_000
    assert (root / "web.warc.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_page_kinds():
    pages = demo_pages()
    assert len({p.url for p in pages}) == len(pages) == 41
    assert Counter(p.kind for p in pages) == {"article": 27, "duplicate": 2, "near-duplicate": 3, "junk": 4,
                                              "toxic": 2, "pii": 3}
    articles = Counter(p.lang for p in pages if p.kind == "article")
    assert articles == {"en": 16, "zh": 8, "de": 1, "fr": 1, "es": 1}
    for page in pages:
        if page.kind in ("article", "toxic", "pii"):
            assert len(page.paragraphs) >= 3 and page.title


def test_warc_records(records):
    pages = demo_pages()
    types = Counter(r["type"] for r in records)
    assert types == {"warcinfo": 1, "response": len(pages) + 2, "request": len(pages) + 2, "revisit": 1}
    assert records[0]["type"] == "warcinfo"
    assert len({r["id"] for r in records}) == len(records)
    responses = {r["url"]: r for r in records if r["type"] == "response"}
    by_slug = {p.slug: p for p in pages}
    assert responses[by_slug[NO_CONTENT_TYPE].url]["content_type"] is None
    gbk = responses[by_slug[GBK_PAGE].url]
    assert gbk["content_type"] == "text/html" and b'charset="gbk"' in gbk["payload"]
    assert by_slug[GBK_PAGE].paragraphs[0] in gbk["payload"].decode("gbk")
    assert sum(1 for r in responses.values() if r["content_type"] == "image/png") == 1
    png = next(r for r in responses.values() if r["content_type"] == "image/png")
    assert png["payload"].startswith(b"\x89PNG\r\n\x1a\n")
    assert sum(1 for r in responses.values() if r["content_type"] == "text/plain") == 1
    revisit = next(r for r in records if r["type"] == "revisit")
    assert revisit["url"] == by_slug[REVISITED].url
    assert revisit["digest"] == responses[by_slug[REVISITED].url]["digest"]
    for page in pages:
        payload = responses[page.url]["payload"]
        text = payload.decode("gbk" if page.slug == GBK_PAGE else "utf-8")
        assert text.startswith("<!DOCTYPE html>")
        if page.template != "cookie-only":
            assert "<nav" in text and "<footer" in text  # boilerplate around the content
        source = by_slug[page.original] if page.kind == "duplicate" else page
        for paragraph in source.paragraphs[:2]:
            assert paragraph.replace("&", "&amp;").replace("'", "&#x27;").replace('"', "&quot;") in text


def test_duplicates_and_near_duplicates(records):
    pages = demo_pages()
    by_slug = {p.slug: p for p in pages}
    payloads = {r["url"]: r["payload"] for r in records if r["type"] == "response"}
    for slug, url in EXACT_DUPLICATES.items():
        assert payloads[url] == payloads[by_slug[slug].url]  # the same bytes under another URL
    for page in pages:
        if page.kind != "near-duplicate":
            continue
        original = by_slug[page.original]
        a, b = _shingles(" ".join(page.paragraphs), page.lang), _shingles(" ".join(original.paragraphs), page.lang)
        similarity = len(a & b) / len(a | b)
        assert 0.7 < similarity < 1.0, (page.slug, similarity)


def _shingles(text: str, lang: str) -> set:
    units = list(text.replace(" ", "")) if lang == "zh" else re.findall(r"\w+", text.lower())
    return {tuple(units[i : i + 5]) for i in range(len(units) - 4)}


def test_planted_content(records):
    html = "\n".join(r["payload"].decode("utf-8", "replace") for r in records if r["type"] == "response")
    for needle in PII + TOXIC:
        assert needle in html, needle
    assert "Lorem ipsum dolor sit amet" in html and html.lower().count("cheap flights") >= 20
    assert 'id="cookie-banner"' in html


def test_books_read_cleanly(demo):
    reader = BookReader("books")
    docs = {}
    for path in sorted(Path(demo["books"]).iterdir()):
        for batch in reader.read(Task("books", "txt", str(path))):
            assert batch.rejects is None
            docs[path.name] = batch.docs.to_pylist()[0]
    assert set(docs) == {"keeper_of_gull_rock.txt", "provencal_kitchen.txt", "shancheng_biji.txt",
                         "stdlib_companion.txt.gz"}
    keeper = docs["keeper_of_gull_rock.txt"]
    assert keeper["encoding"] == "utf-8-sig" and keeper["title"] == "The Keeper of Gull Rock"
    assert keeper["text"].startswith("THE KEEPER OF GULL ROCK") and "gutenberg" not in keeper["text"].lower()
    assert keeper["text"].rstrip().endswith("kept a room ready for him for eleven years.")
    kitchen = docs["provencal_kitchen.txt"]
    assert kitchen["encoding"] == "latin-1" and kitchen["text"].startswith("NOTES FROM A PROVENÇAL KITCHEN")
    assert "naïve" in kitchen["text"] and "£5" in kitchen["text"]
    assert docs["shancheng_biji.txt"]["text"].startswith("山城笔记")
    companion = docs["stdlib_companion.txt.gz"]["text"]
    assert len(companion) > 100_000 and companion.count("CHAPTER") > 10
    # enough English and Chinese text for a small tokenizer
    web_chars = sum(len(p) for page in demo_pages() if page.lang in ("en", "zh") for p in page.paragraphs)
    book_chars = sum(len(doc["text"]) for doc in docs.values())
    assert web_chars + book_chars > 200_000


def test_code_tree(demo):
    batches = list(CodeReader("code").read(Task("code", "code", demo["code"])))
    paths = sorted(p for b in batches if b.docs is not None for p in b.docs["path"].to_pylist())
    skipped = sum((b.skipped for b in batches), Counter())
    assert not any(b.rejects for b in batches)
    assert len([p for p in paths if p.startswith("src/click/") and p.endswith(".py")]) == 10
    assert "README.md" in paths and "Makefile" in paths
    assert skipped["vendored-dir"] == 1 and skipped["minified"] == 1


def test_warc_reader_finds_every_html_page(demo):
    reader = reader_class(DEMO_FORMATS["web"])("web")
    urls, rejects = [], 0
    for batch in reader.read(Task("web", DEMO_FORMATS["web"], demo["web"])):
        if batch.docs is not None:
            urls += batch.docs["url"].to_pylist()
        rejects += 0 if batch.rejects is None else batch.rejects.num_rows
    assert sorted(urls) == sorted(p.url for p in demo_pages()) and rejects == 0
