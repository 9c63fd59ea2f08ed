"""The raw inputs of the bundled demo: a small web crawl (WARC), books and a code tree.

Everything is written here from text shipped in ``curate/data/demo`` (prose written
for the demo) or taken from installed packages (Python standard-library docstrings
for a longer English book, ``click``'s source for the code tree): nothing is
downloaded. The same environment gives the same bytes on every run: record ids,
dates and gzip headers are fixed.

The crawl is built so that every stage has work: English, Chinese and a few
German/French/Spanish articles wrapped in site boilerplate (navigation, cookie
banner, footer), exact and near duplicates, junk pages, toxic lines, planted PII,
plus the WARC records a reader must skip (warcinfo, request, revisit, an image,
plain text) and one HTML response without a Content-Type header.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import importlib
import inspect
import io
import re
import shutil
import struct
import uuid
import warnings
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

DEMO_DIR = Path(__file__).parent / "data" / "demo"
CRAWL_START = datetime(2026, 3, 1, 10, 0, 0, tzinfo=timezone.utc)

#: Page kinds, and how many pages of each the crawl holds (checked by the tests).
KINDS = ("article", "duplicate", "near-duplicate", "junk", "toxic", "pii")
#: The page served with no Content-Type header (HTML must be sniffed).
NO_CONTENT_TYPE = "chess"
#: The page served as GBK, its charset only in the <meta> tag.
GBK_PAGE = "panda"
#: The page captured a second time as a revisit record.
REVISITED = "tides"
EXACT_DUPLICATES = {"sourdough": "https://www.recipe-mirror.net/copies/simple-sourdough-loaf",
                    "tea": "https://www.cha-zhuanzai.cn/zhuanzai/zhongguo-cha-wenhua"}
#: Stdlib modules whose docstrings become the generated English book (no GUI modules: CI may lack Tk).
DOCSTRING_MODULES = (
    "argparse", "asyncio", "calendar", "collections", "concurrent.futures", "contextlib", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email", "enum", "fractions", "functools", "gettext", "glob", "gzip",
    "hashlib", "heapq", "http.client", "imaplib", "inspect", "ipaddress", "itertools", "json", "locale",
    "logging", "mailbox", "numbers", "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random", "re",
    "sched", "secrets", "shelve", "shlex", "shutil", "smtplib", "socket", "statistics", "string", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "timeit", "typing", "unittest", "urllib.parse",
    "urllib.request", "uuid", "warnings", "weakref", "zipfile", "zoneinfo",
)
DOCSTRING_BOOK_CHARS = 160_000
CLICK_FILES = ("__init__.py", "_compat.py", "_textwrap.py", "_utils.py", "decorators.py", "exceptions.py",
               "formatting.py", "globals.py", "parser.py", "utils.py")


@dataclass(frozen=True)
class DemoPage:
    slug: str
    kind: str
    lang: str
    url: str
    title: str
    paragraphs: tuple[str, ...]
    template: str = "site"  # "site", "syndicated" (near duplicates), or a junk layout
    original: str | None = None  # the page a duplicate or near duplicate copies


#: The reader format of each source that ``build_demo_inputs`` returns.
DEMO_FORMATS = {"web": "warc", "books": "txt", "code": "code"}


def build_demo_inputs(directory: str) -> dict[str, str]:
    """Write the demo's raw inputs under ``directory``; returns ``{source: path}`` (formats: ``DEMO_FORMATS``)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    web = root / "web.warc.gz"
    write_warc(web, demo_pages())
    books = write_books(root / "books")
    code = write_code_tree(root / "code")
    return {"web": str(web), "books": str(books), "code": str(code)}


# -- pages ---------------------------------------------------------------------------------------------


def demo_pages() -> list[DemoPage]:
    """Every HTML page of the crawl, in crawl order."""
    pages = []
    for name in ("web_en.txt", "web_zh.txt", "web_other.txt", "web_special.txt"):
        pages += _parse_pages((DEMO_DIR / name).read_text("utf-8"))
    by_slug = {page.slug: page for page in pages}
    for slug, url in EXACT_DUPLICATES.items():
        pages.append(replace(by_slug[slug], slug=f"{slug}-copy", kind="duplicate", url=url, original=slug))
    pages += _near_duplicates(by_slug)
    pages += _junk_pages()
    return pages


def _parse_pages(text: str) -> list[DemoPage]:
    pages = []
    for block in re.split(r"^=== ", text, flags=re.MULTILINE)[1:]:
        header, _, body = block.partition("\n")
        slug, lang, url = (part.strip() for part in header.split("|"))
        title, _, rest = body.strip().partition("\n")
        paragraphs = tuple(p.strip() for p in rest.strip().split("\n\n") if p.strip())
        kind = "toxic" if slug.startswith("toxic") else "pii" if slug.startswith("pii") else "article"
        pages.append(DemoPage(slug, kind, lang, url, title.strip(), paragraphs))
    return pages


def _near_duplicates(by_slug: dict[str, DemoPage]) -> list[DemoPage]:
    """Syndicated copies: a few words changed, or a short paragraph added."""
    photosynthesis = by_slug["photosynthesis"]
    edited = tuple(
        p.replace("summer tree", "summer oak").replace("very ordinary", "rather ordinary").replace("unwieldy", "awkward")
        for p in photosynthesis.paragraphs
    )
    silk_road = by_slug["silk-road"]
    added = silk_road.paragraphs + ("Today several countries are working to protect what remains of the old caravan "
                                    "cities, and new railways once again carry goods across the same deserts.",)
    festival = by_slug["spring-festival"]
    festival_edited = tuple(p.replace("丰盛的饭菜", "丰盛的年菜").replace("热闹的活动", "热闹的庆祝活动")
                            for p in festival.paragraphs)
    return [
        replace(photosynthesis, slug="photosynthesis-syndicated", kind="near-duplicate", paragraphs=edited,
                url="https://news.daily-digest.example.com/science/2026/03/how-plants-turn-light-into-food",
                template="syndicated", original="photosynthesis"),
        replace(silk_road, slug="silk-road-syndicated", kind="near-duplicate", paragraphs=added,
                url="https://news.daily-digest.example.com/history/2026/03/along-the-silk-road",
                template="syndicated", original="silk-road"),
        replace(festival, slug="spring-festival-syndicated", kind="near-duplicate", paragraphs=festival_edited,
                url="https://www.xinwen-zhaiyao.cn/wenhua/2026/chunjie-xisu", template="syndicated",
                original="spring-festival"),
    ]


LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore "
    "magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo "
    "consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur."
)
SPAM_WORDS = ("cheap flights", "best hotel deals", "cheap flights", "discount cruises", "last minute cheap flights",
              "free travel insurance", "cheap car rental", "best price guaranteed")


def _junk_pages() -> list[DemoPage]:
    links = tuple(f"{name}" for name in (
        "Home", "New arrivals", "Women", "Men", "Kids", "Shoes", "Bags", "Accessories", "Sale", "Gift cards",
        "Store finder", "Delivery", "Returns", "Size guide", "Careers", "Press", "Affiliates", "Contact us",
        "Privacy policy", "Terms of use", "Sitemap", "Track my order", "Newsletter", "Blog"))
    spam = tuple(" ".join(SPAM_WORDS[(i + j) % len(SPAM_WORDS)] for j in range(12)) for i in range(6))
    return [
        DemoPage("junk-links", "junk", "en", "https://shop.bargain-outlet.example.com/sitemap", "Sitemap", links,
                 template="link-list"),
        DemoPage("junk-cookies", "junk", "en", "https://www.portal-landing.example.net/", "Welcome", (),
                 template="cookie-only"),
        DemoPage("junk-lorem", "junk", "en", "https://themes.starter-kit.example.org/demo/blog-post",
                 "Sample Blog Post", (LOREM,) * 4),
        DemoPage("junk-spam", "junk", "en", "https://cheap-flights-best-deals.example.biz/cheap-flights",
                 "Cheap Flights Cheap Hotels Best Deals", spam),
    ]


# -- HTML ----------------------------------------------------------------------------------------------

CHROME = {  # boilerplate words by page language: nav, related, cookie banner, footer
    "en": ("Home", "Articles", "Recipes", "Travel", "About us", "Contact", "Subscribe", "Related reading",
           "We use cookies to improve your experience. By continuing to browse you accept our cookie policy.",
           "Accept all", "All rights reserved.", "Share this article", "Most popular this week"),
    "zh": ("首页", "文章", "美食", "旅行", "关于我们", "联系我们", "订阅", "相关阅读",
           "本网站使用Cookie来改善您的浏览体验。继续浏览即表示您同意我们的Cookie政策。",
           "全部接受", "版权所有", "分享到微信", "本周热门"),
    "de": ("Startseite", "Artikel", "Rezepte", "Reisen", "Über uns", "Kontakt", "Abonnieren", "Weiterlesen",
           "Wir verwenden Cookies, um Ihr Erlebnis zu verbessern.", "Alle akzeptieren", "Alle Rechte vorbehalten.",
           "Artikel teilen", "Beliebt diese Woche"),
    "fr": ("Accueil", "Articles", "Recettes", "Voyages", "À propos", "Contact", "S'abonner", "À lire aussi",
           "Nous utilisons des cookies pour améliorer votre expérience.", "Tout accepter", "Tous droits réservés.",
           "Partager l'article", "Les plus lus"),
    "es": ("Inicio", "Artículos", "Recetas", "Viajes", "Quiénes somos", "Contacto", "Suscribirse", "Te puede interesar",
           "Usamos cookies para mejorar tu experiencia.", "Aceptar todo", "Todos los derechos reservados.",
           "Compartir artículo", "Lo más leído"),
}


def render_page(page: DemoPage, pages: list[DemoPage], charset: str = "utf-8") -> str:
    """A whole HTML document: the article inside its site's navigation, sidebar, banner and footer."""
    host = urlsplit(page.url).hostname or "example.com"
    site = host.removeprefix("www.").split(".")[0].replace("-", " ").title()
    (home, articles, recipes, travel, about, contact, subscribe, related, cookie, accept, rights, share,
     popular) = CHROME.get(page.lang, CHROME["en"])
    esc = html.escape
    nav = "".join(f'<li><a href="/{slug}">{esc(label)}</a></li>' for slug, label in
                  (("", home), ("articles", articles), ("recipes", recipes), ("travel", travel),
                   ("about", about), ("contact", contact)))
    siblings = [p for p in pages if urlsplit(p.url).hostname == host and p.slug != page.slug and p.kind != "junk"]
    related_items = "".join(f'<li><a href="{esc(p.url)}">{esc(p.title)}</a></li>' for p in siblings[:4])
    head = (f'<!DOCTYPE html>\n<html lang="{page.lang}">\n<head>\n<meta charset="{charset}">\n'
            f"<title>{esc(page.title)} | {esc(site)}</title>\n"
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<link rel="stylesheet" href="/static/site.css">\n'
            f"<script>window.dataLayer = window.dataLayer || []; function gtag(){{dataLayer.push(arguments);}}</script>\n"
            f"</head>\n")
    header = (f'<header class="site-header"><a class="logo" href="/">{esc(site)}</a>\n'
              f'<nav class="main-nav"><ul>{nav}</ul></nav>\n'
              f'<a class="button" href="/subscribe">{esc(subscribe)}</a></header>\n')
    cookie_banner = (f'<div id="cookie-banner" class="cookie-consent"><p>{esc(cookie)}</p>'
                     f'<button>{esc(accept)}</button></div>\n')
    footer = (f'<footer class="site-footer"><ul>{nav}</ul>\n'
              f"<p>&copy; 2026 {esc(site)}. {esc(rights)}</p></footer>\n")
    if page.template == "cookie-only":
        body = f'<body>\n{cookie_banner}<main id="app"></main>\n<noscript>Please enable JavaScript.</noscript>\n'
        return head + body + "</body>\n</html>\n"
    if page.template == "link-list":
        items = "".join(f'<li><a href="/{esc(label.lower().replace(" ", "-"))}">{esc(label)}</a></li>\n'
                        for label in page.paragraphs)
        main = f'<main><h1>{esc(page.title)}</h1>\n<ul class="sitemap">\n{items}</ul></main>\n'
        return head + f"<body>\n{header}{main}{footer}</body>\n</html>\n"
    paragraphs = "\n".join(f"<p>{esc(p)}</p>" for p in page.paragraphs)
    byline = "Syndicated from our partners" if page.template == "syndicated" else f"{esc(site)} editors"
    article = (f'<main class="content">\n<div class="breadcrumbs"><a href="/">{esc(home)}</a> &rsaquo; '
               f'<a href="/articles">{esc(articles)}</a></div>\n'
               f'<article>\n<h1>{esc(page.title)}</h1>\n<p class="byline">{byline} &middot; '
               f'<time datetime="2026-02-14">2026-02-14</time></p>\n{paragraphs}\n</article>\n'
               f'<div class="share">{esc(share)}: <a href="#">Facebook</a> <a href="#">X</a> <a href="#">Email</a></div>\n'
               f"</main>\n")
    sidebar = (f'<aside class="sidebar"><h2>{esc(related)}</h2><ul>{related_items}</ul>\n'
               f"<h2>{esc(popular)}</h2><ol>{related_items}</ol></aside>\n")
    return head + f"<body>\n{cookie_banner}{header}{article}{sidebar}{footer}</body>\n</html>\n"


# -- WARC ----------------------------------------------------------------------------------------------


def write_warc(path: Path, pages: list[DemoPage]) -> None:
    """A per-record gzip WARC 1.0: warcinfo, then request/response pairs, a revisit, an image, plain text."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True, warc_version="1.0")
    clock = iter(range(10_000))

    def headers(kind: str, url: str) -> dict[str, str]:
        tick = next(clock)
        record_id = uuid.uuid5(uuid.NAMESPACE_URL, f"curate-demo/{tick}/{kind}/{url}")
        date = (CRAWL_START + timedelta(seconds=17 * tick)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"WARC-Record-ID": f"<urn:uuid:{record_id}>", "WARC-Date": date}

    info = b"software: curate demo generator\r\nformat: WARC File Format 1.0\r\ndescription: curate demo crawl\r\n"
    writer.write_record(writer.create_warc_record(
        "", "warcinfo", payload=io.BytesIO(info), length=len(info), warc_content_type="application/warc-fields",
        warc_headers_dict={**headers("warcinfo", ""), "WARC-Filename": path.name}))

    def capture(url: str, body: bytes, content_type: str | None) -> None:
        target = urlsplit(url)
        request = StatusAndHeaders(f"GET {target.path or '/'} HTTP/1.1", [
            ("Host", target.hostname or ""), ("User-Agent", "curate-demo-crawler/1.0"), ("Accept", "*/*")],
            is_http_request=True)
        http = [("Date", "Sun, 01 Mar 2026 10:00:00 GMT"), ("Server", "nginx")]
        if content_type is not None:
            http.append(("Content-Type", content_type))
        http.append(("Content-Length", str(len(body))))
        response = writer.create_warc_record(
            url, "response", payload=io.BytesIO(body), length=len(body),
            http_headers=StatusAndHeaders("200 OK", http, protocol="HTTP/1.1"),
            warc_headers_dict=headers("response", url))
        writer.write_request_response_pair(
            writer.create_warc_record(url, "request", http_headers=request, warc_headers_dict=headers("request", url)),
            response)

    by_slug = {page.slug: page for page in pages}
    revisit_of = None
    for page in pages:
        if page.slug == GBK_PAGE:
            body = render_page(page, pages, charset="gbk").encode("gbk")
            capture(page.url, body, "text/html")
        else:
            mirrored = by_slug[page.original] if page.kind == "duplicate" else page  # a mirror: the same bytes
            body = render_page(mirrored, pages).encode("utf-8")
            capture(page.url, body, None if page.slug == NO_CONTENT_TYPE else "text/html; charset=utf-8")
        if page.slug == REVISITED:
            revisit_of = (page.url, body, CRAWL_START.strftime("%Y-%m-%dT%H:%M:%SZ"))
        if page.slug == "tea":
            capture("https://www.chaxiang-wenhua.cn/robots.txt", b"User-agent: *\nDisallow: /admin/\n", "text/plain")
    capture("https://www.quietharbor-science.org/images/logo.png", tiny_png(), "image/png")

    url, body, refers_date = revisit_of
    digest = "sha1:" + _base32_sha1(body)
    writer.write_record(writer.create_revisit_record(
        url, digest, url, refers_date,
        http_headers=StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"),
        warc_headers_dict=headers("revisit", url)))
    path.write_bytes(out.getvalue())


def _base32_sha1(data: bytes) -> str:
    import base64

    return base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def tiny_png() -> bytes:
    """A valid 2x2 RGB PNG, built byte by byte."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    pixels = b"".join(b"\x00" + b"\x20\x60\xa0" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(pixels, 9)) + chunk(b"IEND", b""))


# -- books ---------------------------------------------------------------------------------------------


def write_books(directory: Path) -> Path:
    """Four books: one in a Project Gutenberg-style wrapper (UTF-8 with BOM, CRLF), one latin-1,
    one Chinese, and a longer English book generated from standard-library docstrings (gzip)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = DEMO_DIR / "books"
    keeper = (source / "keeper_of_gull_rock.txt").read_text("utf-8")
    wrapped = gutenberg_wrapper("The Keeper of Gull Rock", "Harriet Pennick", keeper)
    (directory / "keeper_of_gull_rock.txt").write_bytes(b"\xef\xbb\xbf" + wrapped.replace("\n", "\r\n").encode("utf-8"))
    kitchen = (source / "provencal_kitchen.txt").read_text("utf-8")
    (directory / "provencal_kitchen.txt").write_bytes(kitchen.encode("latin-1"))
    shutil.copyfile(source / "shancheng_biji.txt", directory / "shancheng_biji.txt")
    companion = docstring_book()
    with open(directory / "stdlib_companion.txt.gz", "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            f.write(companion.encode("utf-8"))
    return directory


def gutenberg_wrapper(title: str, author: str, body: str) -> str:
    """The text inside a header and licence footer shaped like Project Gutenberg's (wording our own)."""
    upper = title.upper()
    header = (f"The Project Gutenberg EBook of {title}, by {author}\n\n"
              "This demo eBook imitates the layout of a Project Gutenberg file so that the\n"
              "boilerplate stripping of the books reader has something to remove.\n\n"
              f"Title: {title}\n\nAuthor: {author}\n\nRelease Date: March 1, 2026 [EBook #0]\n\n"
              "Language: English\n\nCharacter set encoding: UTF-8\n\n"
              f"*** START OF THIS PROJECT GUTENBERG EBOOK {upper} ***\n\n\n\n\n"
              "Produced by the curate demo generator\n\n\n\n\n")
    footer = (f"\n\n\n\n\nEnd of the Project Gutenberg EBook of {title}, by {author}\n\n"
              f"*** END OF THIS PROJECT GUTENBERG EBOOK {upper} ***\n\n"
              "***** This file should be named keeper_of_gull_rock.txt *****\n\n"
              "*** START: FULL LICENSE ***\n\n"
              "A few lines standing in for the licence: redistribution terms, trademark\n"
              "notes and donation requests would appear here in a real file.\n")
    return header + body.strip() + footer


def docstring_book(max_chars: int = DOCSTRING_BOOK_CHARS) -> str:
    """English prose paragraphs from standard-library docstrings, one chapter per module."""
    seen: set[str] = set()
    chapters, total = [], 0
    for number, name in enumerate(DOCSTRING_MODULES, 1):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        with warnings.catch_warnings():  # typing.io and friends warn when their docs are read
            warnings.simplefilter("ignore", DeprecationWarning)
            paragraphs = [p for p in _prose_paragraphs(module) if p not in seen]
        seen.update(paragraphs)
        if not paragraphs:
            continue
        chapter = f"CHAPTER {number}. THE {name.upper()} MODULE\n\n" + "\n\n".join(paragraphs)
        chapters.append(chapter)
        total += len(chapter)
        if total >= max_chars:
            break
    return "A READER'S COMPANION TO THE PYTHON STANDARD LIBRARY\n\n\n" + "\n\n\n".join(chapters) + "\n"


def _prose_paragraphs(module) -> list[str]:
    docs = [inspect.getdoc(module) or ""]
    for attr in sorted(dir(module)):
        if attr.startswith("_"):
            continue
        obj = getattr(module, attr, None)
        if getattr(obj, "__module__", None) != module.__name__ or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        docs.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            docs += [inspect.getdoc(m) or "" for n, m in sorted(vars(obj).items())
                     if not n.startswith("_") and inspect.isfunction(m)]
    out = []
    for doc in docs:
        for paragraph in re.split(r"\n\s*\n", doc):
            if any(line.lstrip().startswith((">>>", "...", "$", "-", "*", "+", "|")) for line in paragraph.splitlines()):
                continue  # examples, lists and tables are not prose
            paragraph = " ".join(paragraph.split())
            if len(paragraph.split()) < 12 or not paragraph.endswith("."):
                continue
            if sum(c.isalpha() or c == " " for c in paragraph) / len(paragraph) < 0.9:
                continue
            out.append(paragraph)
    return list(dict.fromkeys(out))


# -- code ----------------------------------------------------------------------------------------------

LEFT_PAD = """'use strict';
module.exports = leftPad;

function leftPad(str, len, ch) {
  str = String(str);
  var i = -1;
  if (!ch && ch !== 0) ch = ' ';
  len = len - str.length;
  while (++i < len) {
    str = ch + str;
  }
  return str;
}
"""
MINIFIED = ("!function(e,t){\"use strict\";var n=function(e){return e.replace(/^\\s+|\\s+$/g,\"\")};"
            "e.trimAll=function(t){for(var r=[],o=0;o<t.length;o++)r.push(n(t[o]));return r};"
            "e.version=\"1.0.0\"}(window);") * 40
CODE_README = """# clickdemo

A few modules of the `click` command-line library, copied from the installed package, as a small code
tree for the curate demo. `node_modules/` and `static/app.min.js` are there to be skipped.
"""
MAKEFILE = """PYTHON ?= python3

test:
\t$(PYTHON) -m pytest -q

lint:
\t$(PYTHON) -m ruff check src

.PHONY: test lint
"""


def write_code_tree(directory: Path) -> Path:
    """A repository-like tree: click modules, a README, a Makefile, plus a vendored and a minified file."""
    import click

    package = Path(click.__file__).parent
    target = directory / "src" / "click"
    target.mkdir(parents=True, exist_ok=True)
    for name in CLICK_FILES:
        shutil.copyfile(package / name, target / name)
    (directory / "README.md").write_text(CODE_README, "utf-8")
    (directory / "Makefile").write_text(MAKEFILE, "utf-8")
    vendored = directory / "node_modules" / "left-pad"
    vendored.mkdir(parents=True, exist_ok=True)
    (vendored / "index.js").write_text(LEFT_PAD, "utf-8")
    (directory / "static").mkdir(exist_ok=True)
    (directory / "static" / "app.min.js").write_text(MINIFIED, "utf-8")
    return directory
