"""WARC / WET / ARC / HTML readers on the real fixtures in ../shared/data/warc and on broken files made here."""

from __future__ import annotations

import gzip
import os
import random
import zlib
from collections import Counter

import brotli
import pyarrow as pa
import pytest

from curate.readers import Task
from curate.readers.html import HtmlFileReader
from curate.readers.warc import WARC_SCHEMA, ArcReader, WarcOptions, WarcReader, WetReader
from curate.schema import doc_id

PAGE = "<!doctype html><html><head><title>T</title></head><body><p>{}</p></body></html>"


def read_all(reader, path):
    docs, rejects, skipped, records = [], [], Counter(), 0
    for batch in reader.read(Task(reader.source, reader.format, str(path))):
        if batch.docs is not None and batch.docs.num_rows:
            docs.append(batch.docs)
        if batch.rejects is not None:
            rejects.append(batch.rejects)
        skipped += batch.skipped
        records += batch.records
    doc_rows = pa.concat_tables(docs).to_pylist() if docs else []
    reject_rows = pa.concat_tables(rejects).to_pylist() if rejects else []
    return doc_rows, reject_rows, skipped, records


def warc_record(kind: str, block: bytes, url: str = "http://example.com/", content_type: str | None = None,
                length: int | None = None, extra: str = "") -> bytes:
    content_type = content_type or ("application/http; msgtype=response" if kind == "response" else "text/plain")
    head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-05-01T10:00:00Z\r\n"
            f"WARC-Record-ID: <urn:uuid:{abs(hash((url, kind, block))):032x}>\r\nContent-Type: {content_type}\r\n"
            f"{extra}Content-Length: {len(block) if length is None else length}\r\n\r\n")
    return head.encode() + block + b"\r\n\r\n"


def http(payload: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def page(i: int, charset: str = "utf-8") -> bytes:
    return PAGE.format(f"good page number {i}").encode(charset)


def write(path, records: list[bytes], per_record_gzip: bool = False) -> str:
    data = b"".join(gzip.compress(r) for r in records) if per_record_gzip else b"".join(records)
    path.write_bytes(data)
    return str(path)


# -- real fixtures -----------------------------------------------------------------------------------------------


def test_common_crawl_warc(shared_data):
    path = shared_data / "warc/resiliparse/warcfile.warc.gz"
    reader = WarcReader("cc")
    docs, rejects, skipped, records = read_all(reader, path)
    assert records == 50 and len(docs) == 16 and not rejects
    assert skipped == Counter({"record:request": 17, "record:metadata": 16, "record:warcinfo": 1})
    assert all(d["text"] is None and "<" in d["html"] and d["http_status"] == 200 for d in docs)
    assert all(d["url"].startswith("http") and d["fetch_time"] is not None and d["warc_record_id"] for d in docs)
    assert any("\u4e00" <= ch <= "\u9fff" for d in docs for ch in d["html"][:20000])  # Chinese pages decoded
    again, *_ = read_all(WarcReader("cc"), path)
    assert [d["id"] for d in docs] == [d["id"] for d in again] and len({d["id"] for d in docs}) == 16


def test_schema_is_fixed(shared_data):
    for batch in WarcReader("cc").read(Task("cc", "warc", str(shared_data / "warc/warcio/example.warc.gz"))):
        assert batch.docs.schema == WARC_SCHEMA


def test_revisits_and_whole_file_gzip(shared_data):
    docs, rejects, skipped, _ = read_all(WarcReader("x"), shared_data / "warc/warcio/example-bad-non-chunked.warc.gz")
    assert len(docs) == 1 and skipped["record:revisit"] == 1 and not rejects
    plain, *_ = read_all(WarcReader("x"), shared_data / "warc/warcio/example.warc")
    assert [d["url"] for d in plain] == [d["url"] for d in docs]


def test_arc_2008_common_crawl(shared_data):
    path = shared_data / "warc/copycat-commoncrawl-arc/small-sample-1213893279526_0.arc"
    docs, rejects, skipped, records = read_all(ArcReader("cc2008"), path)
    assert records == 146
    assert len(docs) + len(rejects) + sum(skipped.values()) == 146
    assert len(docs) >= 100 and skipped["record:filedesc"] == 1
    # same reader picked automatically for format warc
    docs_via_warc, *_ = read_all(WarcReader("cc2008"), shared_data / "warc/warcio/example.arc.gz")
    assert len(docs_via_warc) == 1 and docs_via_warc[0]["url"] == "http://example.com/"


def test_wet_with_character_counted_lengths(shared_data):
    docs, rejects, skipped, _ = read_all(WetReader("wet"), shared_data / "warc/cc_net/sample.warc.wet")
    assert len(docs) == 3 and not rejects
    texts = {d["url"]: d["text"] for d in docs}
    assert texts["http://sample_chinese.zh"].rstrip().endswith("真理不是。")
    assert "Truth isn't." in texts["http://sample_english.com"]
    assert all("html" not in d for d in docs)


def test_clipped_gzip_is_a_reject(shared_data):
    docs, rejects, _, _ = read_all(WarcReader("x"), shared_data / "warc/resiliparse/clipped.warc.gz")
    assert not docs and [r["reject_reason"] for r in rejects] == ["truncated-record"]


def test_truncated_record_followed_by_garbage(shared_data):
    docs, rejects, skipped, _ = read_all(WarcReader("x"), shared_data / "warc/warcio/example-trunc.warc")
    assert [r["reject_reason"] for r in rejects] == ["truncated-record"]
    assert skipped["record:request"] == 1  # the record after the damage is still read


def test_wayback_export_without_http_headers(shared_data):
    docs, rejects, _, _ = read_all(WarcReader("x"), shared_data / "warc/copycat-wayback/snapshot-wayback-topic-02.warc.gz")
    assert len(docs) == 128 and not rejects and all(d["fetch_time"] is None for d in docs)  # WARC-Date: null


# -- broken inputs made here ---------------------------------------------------------------------------------------


def test_random_bytes_between_records(tmp_path):
    junk = os.urandom(5000).replace(b"WARC/", b"xxxx/")
    path = write(tmp_path / "junk.warc", [warc_record("response", http(page(1), "Content-Type: text/html")), junk,
                                          warc_record("response", http(page(2), "Content-Type: text/html"))])
    docs, rejects, skipped, _ = read_all(WarcReader("x"), path)
    assert ["good page number 1" in d["html"] for d in docs] == [True, False]
    assert "good page number 2" in docs[1]["html"] and skipped["garbage-between-records"] == 1


def test_truncated_per_record_gzip(tmp_path):
    good = [warc_record("response", http(page(i), "Content-Type: text/html")) for i in range(3)]
    data = b"".join(gzip.compress(r) for r in good)
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data[: len(data) - 40])
    docs, rejects, _, _ = read_all(WarcReader("x"), path)
    assert len(docs) == 2 and [r["reject_reason"] for r in rejects] == ["truncated-record"]


@pytest.mark.parametrize("damage", ["garbage-between-members", "corrupt-member", "half-a-member"])
def test_damage_inside_per_record_gzip_loses_only_the_damaged_record(tmp_path, damage):
    members = [gzip.compress(warc_record("response", http(page(i), "Content-Type: text/html"))) for i in range(3)]
    middle = {"garbage-between-members": members[1] + os.urandom(3000).replace(b"\x1f\x8b", b"xx"),
              "corrupt-member": members[1][:30] + os.urandom(100) + members[1][130:],
              "half-a-member": members[1][: len(members[1]) // 2]}[damage]
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(members[0] + middle + members[2])
    docs, rejects, skipped, _ = read_all(WarcReader("x"), path)
    pages = [next(i for i in range(3) if f"good page number {i}<" in d["html"]) for d in docs]
    assert pages == ([0, 1, 2] if damage == "garbage-between-members" else [0, 2])
    assert skipped["gzip-resync"] >= 1
    assert {r["reject_reason"] for r in rejects} <= {"truncated-record", "bad-http-header"}  # what was left of page 1
    # ids name the member's offset in the compressed file, whichever parser read it
    assert docs[0]["id"] == doc_id("x", f"{path}:0")
    assert docs[-1]["id"] == doc_id("x", f"{path}:{len(members[0]) + len(middle)}")


def arc_record(i: int, url: str, repeat: int) -> bytes:
    body = http(page(i) * repeat, "Content-Type: text/html")
    return f"{url} 1.2.3.4 20080101000000 text/html {len(body)}\n".encode() + body + b"\n"


@pytest.mark.parametrize("fmt", ["warc", "arc"])
@pytest.mark.parametrize("compressed", [False, True])
def test_random_damage_loses_only_the_records_it_touches(tmp_path, compressed, fmt):
    """Flip, insert or cut bytes anywhere (seeded): every record whose bytes are intact is still read."""
    rng = random.Random(20240501)
    reader = WarcReader("x") if fmt == "warc" else ArcReader("x")
    for trial in range(100):
        urls = [f"http://e{trial}.com/{i}" for i in range(8)]
        if fmt == "warc":
            records = [warc_record("response", http(page(i) * rng.randint(1, 30), "Content-Type: text/html"), url=u)
                       for i, u in enumerate(urls)]
        else:
            records = [b"filedesc://t.arc 0.0.0.0 20080101000000 text/plain 5\nhello\n"]
            records += [arc_record(i, u, rng.randint(1, 30)) for i, u in enumerate(urls)]
        parts = [gzip.compress(r) for r in records] if compressed else records
        spans, position = [], sum(len(part) for part in parts[:-8])  # the 8 page records come last
        for part in parts[-8:]:
            spans.append((position, position + len(part)))
            position += len(part)
        data = bytearray(b"".join(parts))
        at, n, how = rng.randrange(len(data)), rng.randint(1, 200), rng.choice(["flip", "insert", "cut"])
        if how == "flip":
            data[at:at + n] = bytes(rng.randrange(256) for _ in data[at:at + n])
        elif how == "insert":
            data[at:at] = bytes(rng.randrange(256) for _ in range(n))
            n = 0
        else:
            del data[at:at + n]
        touched = {i for i, (start, end) in enumerate(spans) if start < at + max(n, 1) and end > at}
        path = tmp_path / (f"f.{fmt}.gz" if compressed else f"f.{fmt}")
        path.write_bytes(bytes(data))
        docs, _, _, _ = read_all(reader, path)
        intact = {i for i, u in enumerate(urls) for d in docs
                  if d["url"] == u and d["html"].endswith(f"good page number {i}</p></body></html>")}
        assert set(range(8)) - touched <= intact, (trial, how, at, n)


def test_truncated_whole_file_gzip(tmp_path):
    records = [warc_record("response", http(page(i) * 50, "Content-Type: text/html")) for i in range(4)]
    data = gzip.compress(b"".join(records))
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(data[: int(len(data) * 0.8)])
    docs, rejects, skipped, _ = read_all(WarcReader("x"), path)
    # the first two records decompress whole; the cut is reported, not raised
    assert len(docs) == 2 and not rejects and skipped["unreadable:truncated-gzip"] == 1


def test_wrong_content_length(tmp_path):
    short = warc_record("response", http(page(1), "Content-Type: text/html"), length=60)
    path = write(tmp_path / "cl.warc", [short, warc_record("response", http(page(2), "Content-Type: text/html"))])
    docs, rejects, _, _ = read_all(WarcReader("x"), path)
    assert [r["reject_reason"] for r in rejects] == ["truncated-record"]
    assert len(docs) == 1 and "good page number 2" in docs[0]["html"]


def test_encodings_and_bombs(tmp_path):
    bomb = gzip.compress(b"<html>" + b" " * (8 << 20))
    records = [
        warc_record("response", http(gzip.compress(page(1)), "Content-Type: text/html", "Content-Encoding: gzip")),
        warc_record("response", http(brotli.compress(page(2)), "Content-Type: text/html", "Content-Encoding: br")),
        warc_record("response", http(zlib.compress(page(3)), "Content-Type: text/html", "Content-Encoding: deflate")),
        warc_record("response", http(b"a\r\n<html>hello</html>\r\nzz\r\n", "Content-Type: text/html",
                                     "Transfer-Encoding: chunked")),
        warc_record("response", http(bomb, "Content-Type: text/html", "Content-Encoding: gzip")),
        warc_record("response", http(b"\x1f\x8b\x08garbage" * 10, "Content-Type: text/html", "Content-Encoding: gzip")),
        warc_record("response", http(b"5\r\nhello\r\n0\r\n\r\n", "Content-Type: text/html", "Transfer-Encoding: chunked")),
        warc_record("response", http(page(8), "Content-Type: text/html")),
    ]
    path = write(tmp_path / "enc.warc.gz", records, per_record_gzip=True)
    docs, rejects, _, records_seen = read_all(WarcReader("x", WarcOptions(max_record_bytes=1 << 20)), path)
    reasons = [r["reject_reason"] for r in rejects]
    assert reasons == ["bad-chunking", "decompression-bomb", "bad-content-encoding"]
    assert [f"good page number {i}" in d["html"] for d, i in zip(docs, (1, 2, 3))] == [True] * 3
    assert "good page number 8" in docs[-1]["html"] and records_seen == 8
    assert any(d["html"] == "hello" for d in docs)  # valid chunking undone


def test_oversized_record(tmp_path):
    huge = http(b"<html><p>" + b"x" * (3 << 20) + b"</p></html>", "Content-Type: text/html")
    records = [warc_record("response", huge), warc_record("response", http(page(2), "Content-Type: text/html"))]
    path = write(tmp_path / "big.warc", records)
    docs, rejects, _, _ = read_all(WarcReader("x", WarcOptions(max_record_bytes=1 << 20)), path)
    assert [r["reject_reason"] for r in rejects] == ["too-large"] and len(docs) == 1


@pytest.mark.parametrize("compressed", [False, True])
def test_100_mb_single_line_page_with_default_options(tmp_path, compressed):
    huge = http(b"<html><body><p>" + b"x" * (100 << 20) + b"</p></body></html>", "Content-Type: text/html")
    records = [warc_record("response", http(page(1), "Content-Type: text/html")), warc_record("response", huge),
               warc_record("response", http(page(3), "Content-Type: text/html"))]
    path = tmp_path / ("huge.warc.gz" if compressed else "huge.warc")
    path.write_bytes(b"".join(gzip.compress(r, compresslevel=1) for r in records) if compressed else b"".join(records))
    del records, huge
    docs, rejects, _, _ = read_all(WarcReader("x"), path)
    assert [r["reject_reason"] for r in rejects] == ["too-large"] and rejects[0]["html"] is None
    assert ["good page number 1" in docs[0]["html"], "good page number 3" in docs[1]["html"]] == [True, True]


def test_charsets(tmp_path):
    chinese = "<html><body><p>中文网页的正文内容，用于测试字符集检测。这是一个相当长的句子，以便检测器有足够的证据。</p></body></html>"
    records = [
        # the header lies (says utf-8, bytes are GBK)
        warc_record("response", http(chinese.encode("gbk"), "Content-Type: text/html; charset=utf-8")),
        # only the meta tag says it
        warc_record("response", http(b'<html><head><meta charset="windows-1252"></head><body>caf\xe9 cr\xe8me</body></html>',
                                     "Content-Type: text/html")),
        # nothing says it
        warc_record("response", http(chinese.encode("gb18030"), "Content-Type: text/html")),
        # generic type, sniffed as HTML; an image is skipped
        warc_record("response", http(page(4), "Content-Type: application/octet-stream")),
        warc_record("response", http(b"\x89PNG\r\n\x1a\n" + os.urandom(200), "Content-Type: image/png")),
        warc_record("response", http(page(6), "Content-Type: text/html", status="404 Not Found")),
        # the header says latin-1, the bytes are UTF-8
        warc_record("response", http("<html><body>Müller über Straße</body></html>".encode(),
                                     "Content-Type: text/html; charset=iso-8859-1")),
        # undecodable bytes in any charset are counted
        warc_record("response", http(b"<html><body>ok \xff\xfe\xfd\x81 ok</body></html>", "Content-Type: text/html; charset=utf-8")),
    ]
    docs, rejects, skipped, _ = read_all(WarcReader("x"), write(tmp_path / "cs.warc", records))
    assert not rejects and len(docs) == 6
    assert "中文网页的正文内容" in docs[0]["html"] and docs[0]["decode_errors"] == 0
    assert "café crème" in docs[1]["html"] and docs[1]["charset"] == "cp1252"
    assert "中文网页的正文内容" in docs[2]["html"]
    assert "good page number 4" in docs[3]["html"]
    assert skipped == Counter({"non-html:image": 1, "http-status:4xx": 1})
    assert "Müller über Straße" in docs[4]["html"] and docs[4]["charset"] == "utf_8"
    assert docs[5]["html"].startswith("<html><body>ok ") and docs[5]["html"].endswith(" ok</body></html>")


def test_undecodable_bytes_are_counted():
    from curate.readers.fileio import _decode_counting

    assert _decode_counting(b"ok \xff ok \xc3", "utf_8") == ("ok \ufffd ok \ufffd", 2)
    assert _decode_counting("a \ufffd b \xff".encode() + b"\xff", "utf_8")[1] == 1  # a real U+FFFD is not an error


def test_identified_payload_type_overrides_a_wrong_content_type(tmp_path):
    records = [
        warc_record("response", http(b"%PDF-1.4 binary", "Content-Type: text/html"),
                    extra="WARC-Identified-Payload-Type: application/pdf\r\n"),
        warc_record("response", http(page(2), "Content-Type: application/x-foo"),
                    extra="WARC-Identified-Payload-Type: text/html\r\n"),
    ]
    docs, _, skipped, _ = read_all(WarcReader("x"), write(tmp_path / "p.warc.gz", records, per_record_gzip=True))
    assert len(docs) == 1 and "good page number 2" in docs[0]["html"]
    assert skipped == Counter({"non-html:application": 1})


def test_url_blocklist(tmp_path):
    records = [warc_record("response", http(page(i), "Content-Type: text/html"), url=u)
               for i, u in enumerate(["http://www.spam.com/a", "http://ok.org/b", "http://spam.com.ok.org/c"])]
    reader = WarcReader("x", WarcOptions(url_blocklist=["spam.com"]))
    docs, _, skipped, _ = read_all(reader, write(tmp_path / "b.warc", records))
    assert [d["url"] for d in docs] == ["http://ok.org/b", "http://spam.com.ok.org/c"] and skipped["url-blocked"] == 1


def test_malformed_arc(shared_data, tmp_path):
    docs, rejects, skipped, _ = read_all(ArcReader("x"), shared_data / "warc/warcio/bad.arc")
    assert not docs and skipped["arc:bad-header-line"] >= 1
    arc = (b"filedesc://t.arc 0.0.0.0 20080101000000 text/plain 5\nhello\n" + arc_record(1, "http://a.com/", 1)
           + os.urandom(300).replace(b"\n", b" ") + b"\n" + arc_record(2, "http://b.com/", 1))
    (tmp_path / "t.arc.gz").write_bytes(gzip.compress(arc)[:-30])
    (tmp_path / "t.arc").write_bytes(arc)
    docs, _, skipped, _ = read_all(ArcReader("x"), tmp_path / "t.arc")
    assert [d["url"] for d in docs] == ["http://a.com/", "http://b.com/"] and skipped["arc:bad-header-line"] == 1
    docs, rejects, skipped, _ = read_all(ArcReader("x"), tmp_path / "t.arc.gz")
    assert docs[0]["url"] == "http://a.com/" and skipped["unreadable:truncated-gzip"] == 1


def test_html_files(tmp_path):
    latin = '<html><head><meta charset="iso-8859-1"></head><body>Zürich</body></html>'.encode("latin-1")
    (tmp_path / "a.html").write_bytes(latin)
    (tmp_path / "b.html.gz").write_bytes(gzip.compress(page(2)))
    (tmp_path / "c.html.gz").write_bytes(gzip.compress(page(3) * 100)[:-50])
    (tmp_path / "d.html").write_bytes(b"")
    reader = HtmlFileReader("files")
    results = {name: read_all(reader, tmp_path / name) for name in ("a.html", "b.html.gz", "c.html.gz", "d.html")}
    assert "Zürich" in results["a.html"][0][0]["html"] and results["a.html"][0][0]["path"].endswith("a.html")
    assert "good page number 2" in results["b.html.gz"][0][0]["html"]
    assert [r["reject_reason"] for r in results["c.html.gz"][1]] == ["truncated-gzip"]
    assert [r["reject_reason"] for r in results["d.html"][1]] == ["empty"]


def test_every_fixture_reads_without_crashing(shared_data):
    for path in sorted((shared_data / "warc").rglob("*")):
        if path.suffix == ".md" or path.is_dir() or ".wat" in path.name:
            continue
        reader = WetReader("x") if ".wet" in path.name else ArcReader("x") if ".arc" in path.name else WarcReader("x")
        docs, rejects, skipped, records = read_all(reader, path)
        assert records >= len(docs) + len(rejects), path
        assert records > 0 or skipped, path


def test_url_blocklist_entries_are_normalized(tmp_path):
    records = [warc_record("response", http(page(i), "Content-Type: text/html"), url=f"http://www.example.com/{i}")
               for i in range(2)]
    path = tmp_path / "b.warc"
    path.write_bytes(b"".join(records))
    for entry in ("Example.com", ".example.com", "https://example.com/"):
        reader = WarcReader.from_config("x", {"url_blocklist": [entry]}, where="inputs[0].options")
        docs, _, skipped, _ = read_all(reader, path)
        assert not docs and skipped["url-blocked"] == 2, entry


def test_records_the_parser_drops_still_count_as_read(tmp_path):
    """The funnel's share kept is 1 - (rejected + skipped) / records: every skip must be a counted record."""
    good = [warc_record("response", http(page(i), "Content-Type: text/html")) for i in (1, 2)]
    path = write(tmp_path / "g.warc", [good[0], b"some garbage line that is not a record\r\n\r\n", good[1]])
    docs, rejects, skipped, records = read_all(WarcReader("x"), path)
    assert len(docs) == 2 and not rejects and skipped == Counter({"garbage-between-records": 1})
    assert records == 3
