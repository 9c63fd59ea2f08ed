"""Good text kept, junk rejected: the default per-document stages on real text (issue #15).

Run by hand (about a minute on 2 shared cores):

    .venv/bin/python -m curate.benchmarks.keep_good_text [--data ../shared/data] [--show N]

Every set goes through the per-document stages the ``--input/--format`` shortcut runs
for its format (``curate.config.FORMAT_STAGES``; ``extract`` is left out: the inputs are
text already, which it passes through unchanged), in order, each document stopping at
the first stage that rejects it, exactly as the runner does. The baseline, measured in
the same run on the same documents, is the rule definitions curate had before: words
for Gopher's alphabetic share counted as datatrove counts them (every punctuation
mark a token: ``alpha_words_unit: tokens``), and a line ending a sentence only when
its last character is a terminal mark (``sentence_end: datatrove`` for C4 and
FineWeb), and the whole web pipeline for books. Prints kept / rejected per set with
the reasons, for both.

The sets, all built from ../shared/data (see each folder's SOURCES.md):

* ``books``: four Project Gutenberg novels (Pride and Prejudice, Alice, Frankenstein,
  Sherlock Holmes), the body between the START/END markers cut into chunks of whole
  paragraphs of at least 250 words; each paragraph on one line (as a web page, a JSONL
  dump or an extracted EPUB carries it), paragraphs joined by blank lines, quotes as
  printed (typographic in three books, straight in Sherlock Holmes). Web formats' stages.
* ``books-wrapped``: the same chunks with the lines as printed (hard-wrapped at about
  70 characters), which is what the ``txt`` reader yields: the ``txt`` format's stages.
* ``chinese``: the 552 Chinese Wikipedia passages of CMRC 2018. Web formats' stages.
* ``junk-pages``: for each html_extraction page that has its whole main text as ground
  truth (scrapinghub ``articleBody``, Readability's ``expected.html``), the page's full
  visible text (resiliparse ``extract_plain_text`` with main-content detection off: what
  a Common Crawl WET record holds) with every line of the main text taken out. A line is
  main text when it occurs in the ground truth, or, with 6 words or more, when at least
  half of its word 3-grams do. What is left is the page's navigation, link lists, cookie
  banners, share buttons, footers, teasers and comments; pages with fewer than 50 words of
  it are skipped (Gopher's 50-word minimum would reject them whatever the other rules do).
  Many are not English or Chinese, so ``langid`` rejects them; the report also gives the
  share rejected with language ID labelling only (``languages: all``), i.e. by the
  quality rules alone.
* ``junk-generated``: realistic cases written here: navigation menus, sitemap link lists,
  cookie-consent pages, lorem-ipsum theme demos (plus the real lorem-ipsum test pages of
  Readability's set), SEO keyword lists and tag clouds, a price list, and Chinese menus,
  link lists, keyword spam and price lists.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"

NOVELS = ("pg1342-0.txt", "pg11-0.txt", "pg84-0.txt", "pg1661-8.txt")
CHUNK_WORDS = 250
MIN_JUNK_WORDS = 50

#: Before issue #15: datatrove's definitions of a word and of a sentence end.
BASELINE_PARAMS = {
    "gopher_quality": {"alpha_words_unit": "tokens"},
    "c4": {"sentence_end": "datatrove"},
    "fineweb": {"sentence_end": "datatrove"},
}


# --- the sets -------------------------------------------------------------------------------

def gutenberg_body(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.replace("\r\n", "\n")
    start = re.search(r"\*\*\* ?START OF.*\n", text)
    end = re.search(r"\*\*\* ?END OF", text)
    return text[start.end() if start else 0: end.start() if end else len(text)]


def book_chunks(data: Path = SHARED, wrapped: bool = False, words: int = CHUNK_WORDS) -> list[str]:
    """Chunks of whole paragraphs, at least ``words`` words each, of the four novels.

    ``wrapped``: paragraphs keep their printed line breaks; otherwise each is one line.
    """
    chunks = []
    for name in NOVELS:
        body = gutenberg_body(data / "books" / "gutenberg" / name)
        paragraphs = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", body) if p.strip()]
        if not wrapped:
            paragraphs = [" ".join(p.split()) for p in paragraphs]
        current, count = [], 0
        for paragraph in paragraphs:
            current.append(paragraph)
            count += len(paragraph.split())
            if count >= words:
                chunks.append("\n\n".join(current))
                current, count = [], 0
    return chunks


def chinese_passages(data: Path = SHARED) -> list[str]:
    path = data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _normalized(text: str) -> str:
    return " ".join(re.sub(r"\W+", " ", text.lower()).split())


def page_text(html: str) -> str:
    """All visible text of a page, one block per line (what a WET record holds)."""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=False, alt_texts=False, links=False, list_bullets=False,
                              comments=False)


def boilerplate_lines(html: str, main_text: str) -> list[str]:
    """The lines of the page's visible text that are not part of ``main_text``."""
    main = _normalized(main_text)
    main_words = main.split()
    main_grams = set(zip(main_words, main_words[1:], main_words[2:]))
    padded = f" {main} "
    out = []
    for line in page_text(html).splitlines():
        line = line.strip()
        if not line:
            continue
        norm = _normalized(line)
        if norm and f" {norm} " in padded:
            continue
        words = norm.split()
        if len(words) >= 6:
            grams = list(zip(words, words[1:], words[2:]))
            if sum(g in main_grams for g in grams) >= len(grams) / 2:
                continue
        out.append(line)
    return out


def _gunzip(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode("utf-8", "replace")


def _html_text(html: str) -> str:
    import lxml.html

    return lxml.html.fromstring(html).text_content()


def boilerplate_pages(data: Path = SHARED, min_words: int = MIN_JUNK_WORDS) -> list[str]:
    """Per page with full main-text ground truth: its visible lines minus the main text."""
    root = data / "html_extraction"
    pairs = []
    sh = root / "scrapinghub-article-extraction-benchmark"
    for page_id, item in sorted(json.loads((sh / "ground-truth.json").read_text()).items()):
        pairs.append((_gunzip(sh / "html" / f"{page_id}.html.gz"), item["articleBody"]))
    for page in sorted((root / "mozilla-readability-test-pages").iterdir()):
        if (page / "expected.html.gz").is_file():
            pairs.append((_gunzip(page / "source.html.gz"), _html_text(_gunzip(page / "expected.html.gz"))))
    docs = []
    for html, main in pairs:
        lines = boilerplate_lines(html, main)
        if sum(len(line.split()) for line in lines) >= min_words:
            docs.append("\n".join(lines))
    return docs


def lorem_ipsum_pages(data: Path = SHARED) -> list[str]:
    """The main text of Readability's synthetic test pages that are lorem ipsum (real placeholder pages)."""
    docs = []
    for page in sorted((data / "html_extraction" / "mozilla-readability-test-pages").iterdir()):
        if (page / "expected.html.gz").is_file():
            text = "\n".join(line.strip() for line in _html_text(_gunzip(page / "expected.html.gz")).splitlines()
                             if line.strip())
            if "lorem ipsum" in text.lower() and len(text.split()) >= MIN_JUNK_WORDS:
                docs.append(text)
    return docs


_SECTIONS = ["Home", "News", "World", "Politics", "Business", "Tech", "Science", "Health", "Sport", "Football",
             "Cricket", "Culture", "Books", "Music", "Film", "Travel", "Food", "Style", "Opinion", "Video",
             "Podcasts", "Newsletters", "Subscribe", "Sign in", "Search", "About us", "Contact", "Careers",
             "Advertise", "Privacy", "Terms of use", "Help", "Site map", "RSS", "Facebook", "Twitter"]
_PRODUCTS = ["wireless earbuds", "running shoes", "coffee maker", "standing desk", "office chair", "air fryer",
             "robot vacuum", "gaming laptop", "smart watch", "electric toothbrush", "yoga mat", "backpack",
             "water bottle", "phone case", "desk lamp", "bluetooth speaker", "mechanical keyboard", "webcam"]
_CITIES = ["Paris", "London", "Rome", "Madrid", "Berlin", "Lisbon", "Dublin", "Vienna", "Prague", "Athens",
           "Amsterdam", "Barcelona", "Budapest", "Warsaw", "Oslo", "Stockholm", "Helsinki", "Copenhagen"]

COOKIE_BANNERS = [
    "We value your privacy\nWe and our partners use cookies and similar technologies to store and access "
    "information on your device. We use this information to personalise content and ads, to provide social "
    "media features and to analyse our traffic. By clicking “Accept all”, you consent to our use of cookies. "
    "You can change your choices at any time by visiting our Cookie Policy.\nAccept all\nReject all\n"
    "Manage preferences\nStrictly necessary cookies\nAlways active\nPerformance cookies\nFunctional cookies\n"
    "Targeting cookies\nConfirm my choices\nPowered by OneTrust",
    "This website uses cookies\nThis site uses cookies to improve your experience. We'll assume you're ok with "
    "this, but you can opt-out if you wish.\nAccept\nRead more\nPrivacy Overview\nThis website uses cookies to "
    "improve your experience while you navigate through the website. Out of these cookies, the cookies that are "
    "categorized as necessary are stored on your browser as they are essential for the working of basic "
    "functionalities of the website.\nNecessary\nAlways Enabled\nNon-necessary\nSAVE & ACCEPT",
    "Your privacy choices\nBy continuing to browse this site you agree to our use of cookies. We use cookies to "
    "give you the best possible experience on our website, see our cookie policy and privacy policy.\nOK\n"
    "Cookie settings\nCookie declaration\nNecessary (12)\nPreferences (3)\nStatistics (9)\nMarketing (41)\n"
    "Unclassified (2)\nAllow selection\nAllow all cookies\nDeny",
    "Cookie consent\nWe use cookies to personalise content and ads, to provide social media features and to "
    "analyse our traffic. We also share information about your use of our site with our social media, "
    "advertising and analytics partners who may combine it with other information that you've provided to "
    "them or that they've collected from your use of their services.\nUse necessary cookies only\n"
    "Allow selection\nAllow all cookies\nShow details\nCookiebot by Usercentrics",
]

LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip "
         "ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
         "fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia "
         "deserunt mollit anim id est laborum.")

JUNK_ZH = [
    "首页\n新闻\n体育\n娱乐\n财经\n科技\n汽车\n房产\n游戏\n旅游\n教育\n健康\n登录\n注册\n联系我们\n关于我们",
    "\n".join(f"点击下载 第{i}集 高清 在线观看" for i in range(1, 30)),
    "免费领取 优惠券 免费领取 优惠券 " * 60,
    "\n".join(f"商品{i}  ￥{i * 13}.00  立即购买" for i in range(1, 40)),
    "网站首页 | 公司简介 | 产品中心 | 新闻动态 | 技术支持 | 在线留言 | 联系我们\n"
    "版权所有 © 2023 某某科技有限公司 京ICP备12345678号\n地址：北京市海淀区 电话：010-12345678\n"
    "友情链接：百度 | 新浪 | 搜狐 | 网易 | 腾讯 | 凤凰网 | 人民网 | 新华网",
]


def generated_junk(data: Path | None = SHARED) -> list[str]:
    """Menus, link lists, cookie pages, lorem ipsum, keyword lists and price lists, English and Chinese."""
    docs = []
    # navigation menus: one item a line, as a WET record of a landing page holds them
    for k in range(4):
        items = _SECTIONS[k * 3:] + _SECTIONS[:k * 3]
        docs.append("\n".join(items + ["© 2024 The Daily Example. All rights reserved."]))
    # sitemap / link lists: long link titles, no sentences
    docs.append("\n".join(f"Cheap flights from {a} to {b}" for a in _CITIES[:8] for b in _CITIES[8:12]))
    docs.append("\n".join(f"Best {p} 2024: top {n} picks reviewed and compared" for n, p in enumerate(_PRODUCTS, 5)))
    docs.append("\n".join(f"{p.title()} | Buy {p} online | Free delivery on {p}" for p in _PRODUCTS))
    docs.append("Related articles\n" + "\n".join(
        f"{c}: the {n} best things to do this weekend" for n, c in enumerate(_CITIES, 3)) + "\nLoad more")
    docs += COOKIE_BANNERS
    # lorem ipsum theme demos: headings, lorem paragraphs, a read-more link
    for k in range(3):
        sentences = LOREM.split(". ")
        body = ". ".join(sentences[k:] + sentences[:k])
        docs.append(f"Sample Blog Post {k + 1}\nPosted by admin in Uncategorized\n{body}\n\n{LOREM}\n\n{body}\n"
                    "Read more\nLeave a comment")
    # keyword lists and tag clouds (SEO)
    docs.append(", ".join(f"{p} {w}" for p in _PRODUCTS for w in ("cheap", "best", "deal", "sale", "online")))
    docs.append("Tags: " + " ".join(f"#{p.replace(' ', '')}" for p in _PRODUCTS * 3))
    docs.append("\n".join(f"{c} hotels cheap {c} hotels best {c} hotels deals {c} hotel booking" for c in _CITIES))
    docs.append("Popular searches: " + " | ".join(f"{p} near me" for p in _PRODUCTS + [c.lower() for c in _CITIES]))
    # a price list
    docs.append("\n".join(f"{p.title()}  ${19 + 7 * n}.99  Add to cart" for n, p in enumerate(_PRODUCTS)))
    docs += JUNK_ZH
    if data is not None:
        docs += lorem_ipsum_pages(data)
    return docs


def chinese_book_chunks(data: Path = SHARED, chars: int = 500) -> list[str]:
    """吶喊 and 西遊記 as the txt reader reads them, cut into chunks of whole paragraphs of ``chars`` or more."""
    chunks = []
    for path in sorted((data / "chinese" / "gutenberg-zh").glob("*.txt")):
        paragraphs = [p.strip("\n") for p in re.split(r"\n[ \t\u3000]*\n", path.read_text(encoding="utf-8-sig"))
                      if p.strip()]
        current, count = [], 0
        for paragraph in paragraphs:
            current.append(paragraph)
            count += len(paragraph)
            if count >= chars:
                chunks.append("\n\n".join(current))
                current, count = [], 0
    return chunks


def build_sets(data: Path = SHARED) -> dict[str, tuple[str, list[str]]]:
    """Set name -> (input format whose shortcut stages judge it, documents)."""
    return {
        "books": ("jsonl", book_chunks(data)),
        "books-wrapped": ("txt", book_chunks(data, wrapped=True)),
        "chinese": ("jsonl", chinese_passages(data)),
        "chinese-books": ("txt", chinese_book_chunks(data)),
        "junk-pages": ("warc", boilerplate_pages(data)),
        "junk-generated": ("warc", generated_junk(data)),
    }


# --- running the stages ------------------------------------------------------------------------

def per_document_stages(fmt: str, overrides: dict[str, dict] | None = None) -> list:
    """The per-document stages the shortcut runs for ``fmt``, set up, without ``extract``."""
    from curate.config import default_stage_specs
    from curate.stage import GlobalStage, stage_class

    overrides = overrides or {}
    stages = []
    for spec in default_stage_specs([], fmt=fmt):
        cls = stage_class(spec.name)
        if spec.name == "extract" or issubclass(cls, GlobalStage):
            continue
        stage = cls.from_config({**spec.params, **overrides.get(spec.name, {})}, where=spec.name)
        stage.ensure_setup()
        stages.append(stage)
    return stages


def first_reasons(stages: list, texts: list[str], source: str = "bench", batch: int = 500) -> list[str | None]:
    """Each document's first reject reason along ``stages`` (None: kept by all), as the runner routes them."""
    reasons: list[str | None] = [None] * len(texts)
    for lo in range(0, len(texts), batch):
        rows = list(range(lo, min(lo + batch, len(texts))))
        table = pa.table({"text": [texts[i] for i in rows], "source": [source] * len(rows), "row": rows})
        for stage in stages:
            result = stage.process(table)
            verdicts = result.reasons.to_pylist() if result.reasons is not None else [None] * result.table.num_rows
            for row, reason in zip(result.table["row"].to_pylist(), verdicts):
                reasons[row] = reason
            table = result.table.filter(pa.array([r is None for r in verdicts], pa.bool_()))
            if table.num_rows == 0:
                break
    return reasons


def summary(reasons: list[str | None], top: int = 6) -> str:
    kept = sum(r is None for r in reasons)
    counts = Counter(r for r in reasons if r is not None).most_common(top)
    why = ", ".join(f"{r} {c}" for r, c in counts)
    return f"{kept / len(reasons):6.1%} kept" + (f"  ({why})" if why else "")


def configurations(fmt: str, junk: bool) -> list[tuple[str, str, dict]]:
    """(label, format whose stages run, parameter overrides) to measure one set with."""
    web = "warc" if fmt == "txt" else fmt
    rows = [("curate now", fmt, {}),
            ("before #15", web, BASELINE_PARAMS)]  # datatrove's definitions; books got the web stages too
    if fmt == "txt":
        rows.append(("web stages now", web, {}))  # what C4 and FineWeb would still do to books
    if junk:
        rows.append(("rules alone", fmt, {"langid": {"languages": "all"}}))  # language ID labels, rejects nothing
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--show", type=int, default=0, help="print this many kept junk / rejected good documents")
    args = parser.parse_args()

    started = time.perf_counter()
    sets = build_sets(args.data)
    print(f"sets built in {time.perf_counter() - started:.1f}s: "
          + ", ".join(f"{name} {len(docs)}" for name, (_, docs) in sets.items()))
    for name, (fmt, docs) in sets.items():
        junk = name.startswith("junk")
        print(f"\n{name}: {len(docs)} documents, {'junk' if junk else 'good text'}")
        results = {}
        for label, stages_of, overrides in configurations(fmt, junk):
            results[label] = first_reasons(per_document_stages(stages_of, overrides), docs)
            print(f"  {label:<15} {summary(results[label])}   [stages of {stages_of}]")
        mistakes = [d for d, r in zip(docs, results["curate now"]) if (r is None) == junk]
        for doc in mistakes[:args.show]:
            print("  ---", doc[:400].replace("\n", " | "))
    print(f"\n{time.perf_counter() - started:.1f}s in all")


if __name__ == "__main__":
    main()
