"""BookReader on the real Project Gutenberg books in ../shared/data/books and on broken files."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import pytest

from curate.params import ConfigError
from curate.readers import Task, expand_paths, reader_class
from curate.readers.books import BookOptions, BookReader, split_chunks, strip_gutenberg

MOJIBAKE = re.compile("Ã[\u0080-\u00bf]|â€|\ufffd")


def read_all(path: Path | str, **options):
    reader = BookReader("books", BookOptions(**options))
    batches = list(reader.read(Task("books", "txt", str(path))))
    docs = [row for b in batches if b.docs is not None for row in b.docs.to_pylist()]
    rejects = [row for b in batches if b.rejects is not None for row in b.rejects.to_pylist()]
    return docs, rejects, batches


@pytest.fixture(scope="module")
def books(shared_data) -> dict[str, dict]:
    found = {}
    for path in sorted((shared_data / "books" / "gutenberg").glob("*.txt")):
        docs, rejects, _ = read_all(path)
        assert not rejects and len(docs) == 1
        found[path.name] = docs[0]
    assert len(found) == 6
    return found


def test_registered_for_txt_format():
    assert reader_class("txt") is BookReader


def test_gutenberg_boilerplate_is_gone(books, shared_data):
    for name, doc in books.items():
        raw = (shared_data / "books" / "gutenberg" / name).read_bytes()
        assert b"*** START OF" in raw and b"FULL LICENSE" in raw  # the input does carry the wrapper
        text = doc["text"]
        assert "gutenberg" not in text.lower(), name
        assert "FULL LICENSE" not in text and "This eBook is for the use of anyone" not in text
        assert not text.startswith("Produced by")
        assert doc["title"], name
    assert books["pg1342-0.txt"]["text"].startswith("PRIDE AND PREJUDICE")
    assert books["pg1342-0.txt"]["text"].rstrip().endswith("had been the means of uniting them.")
    assert books["pg11-0.txt"]["title"] == "Alice’s Adventures in Wonderland"
    assert books["pg84-0.txt"]["title"] == "Frankenstein or The Modern Prometheus"
    assert "CHAPTER I. Down the Rabbit-Hole" in books["pg11-0.txt"]["text"]


def test_encodings_detected_without_mojibake(books):
    assert books["pg11-0.txt"]["encoding"] == "utf-8-sig"
    assert books["pg1661-8.txt"]["encoding"] == "latin-1"
    assert books["pg9198-8.txt"]["encoding"] == "latin-1"
    assert books["pg972.txt"]["encoding"] == "ascii"
    for name, doc in books.items():
        text = doc["text"]
        assert not MOJIBAKE.search(text), name
        assert "\r" not in text and "\ufeff" not in text
    assert "’" in books["pg11-0.txt"]["text"]  # UTF-8 curly quotes decoded
    assert "é" in books["pg1661-8.txt"]["text"]  # latin-1 accents decoded
    assert "£" in books["pg9198-8.txt"]["text"]


def test_ids_are_stable_and_distinct(books, shared_data):
    path = shared_data / "books" / "gutenberg" / "pg11-0.txt"
    again, _, _ = read_all(path)
    assert again[0]["id"] == books["pg11-0.txt"]["id"]
    assert len({doc["id"] for doc in books.values()}) == len(books)


def test_footer_only_book_keeps_its_whole_body(shared_data):
    path = shared_data / "chinese" / "gutenberg-zh" / "pg27166-0.txt"  # no header, one "End of the ..." line
    docs, rejects, _ = read_all(path)
    raw = path.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    assert not rejects and docs[0]["text"] == raw[: raw.index("End of the Project Gutenberg EBook")].strip()
    assert docs[0]["title"] is None and docs[0]["text"].startswith("《魯迅︰吶喊》")


def test_text_without_markers_kept_whole(tmp_path):
    text = "第一章\r\n\r\n　　这是一段没有任何页眉页脚的正文。\r\n\r\nChapter two, with *** stars *** in it.\r\n"
    (tmp_path / "plain.txt").write_bytes(text.encode("utf-8"))
    docs, rejects, _ = read_all(tmp_path / "plain.txt")
    assert not rejects and docs[0]["text"] == text.replace("\r\n", "\n").strip()
    assert docs[0]["encoding"] == "utf-8" and docs[0]["title"] is None


def test_chunks_on_paragraph_boundaries(shared_data):
    path = shared_data / "books" / "gutenberg" / "pg1661-8.txt"
    whole, _, _ = read_all(path)
    chunks, _, batches = read_all(path, chunk_chars=4000)
    assert len(chunks) > 100
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert all(len(c["text"]) <= 4000 for c in chunks)
    assert len({c["id"] for c in chunks}) == len(chunks)
    assert " ".join(c["text"] for c in chunks).split() == whole[0]["text"].split()  # nothing lost or reordered
    assert sum(b.records for b in batches) == 1  # one input record, however many chunks
    # each chunk ends at a paragraph end: the next chunk starts a new paragraph in the whole text
    whole_text = whole[0]["text"]
    for chunk in chunks[1:20]:
        at = whole_text.index(chunk["text"][:200])
        assert whole_text[:at].endswith("\n\n")


def test_split_chunks_long_paragraph_and_line():
    text = "short one\n\n" + "\n".join(["x" * 30] * 10) + "\n\n" + "y" * 95
    chunks = split_chunks(text, 40)
    assert all(len(c) <= 40 for c in chunks)
    assert "".join(chunks).replace("\n", "") == text.replace("\n", "")


def test_strip_gutenberg_variants():
    old_style = (
        "**The Project Gutenberg Etext of Old Book, by An Author**\nsmall print here\n"
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n"
        "Produced by Someone\nand Someone Else\n\nThe real text.\n\nEnd of The Project Gutenberg Etext of Old Book\n"
    )
    body, title = strip_gutenberg(old_style)
    assert body.strip() == "The real text."
    assert title == "Old Book"
    four_stars = "Header\n**** START OF THE PROJECT GUTENBERG EBOOK 42 ****\nBody.\n***END OF THE PROJECT GUTENBERG EBOOK 42***\n"
    assert strip_gutenberg(four_stars)[0].strip() == "Body."
    plain = "A book about *** stars ***.\n\nNo wrapper here."
    assert strip_gutenberg(plain) == (plain, None)


def test_bad_inputs_are_rejects_with_reasons(tmp_path):
    cases = {
        "empty.txt": (b"", "empty"),
        "blank.txt": (b"\r\n  \r\n", "empty"),
        "image.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8, "binary"),
        "only-wrapper.txt": (b"The Project Gutenberg EBook of X, by Y\r\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n"
                             b"\r\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nlicence\r\n", "empty-after-boilerplate"),
    }
    for name, (payload, reason) in cases.items():
        (tmp_path / name).write_bytes(payload)
        docs, rejects, _ = read_all(tmp_path / name)
        assert not docs and [r["reject_reason"] for r in rejects] == [reason], name
        assert rejects[0]["path"] == str(tmp_path / name)
    whole = gzip.compress(("A sentence of a book.\n" * 5000).encode())
    (tmp_path / "cut.txt.gz").write_bytes(whole[: len(whole) // 2])
    docs, rejects, _ = read_all(tmp_path / "cut.txt.gz")
    assert not docs and rejects[0]["reject_reason"] == "unreadable:EOFError"
    (tmp_path / "big.txt.gz").write_bytes(whole)
    docs, rejects, _ = read_all(tmp_path / "big.txt.gz", max_bytes=10_000)
    assert not docs and rejects[0]["reject_reason"] == "too-large"
    docs, rejects, _ = read_all(tmp_path / "big.txt.gz")
    assert not rejects and docs[0]["text"].count("A sentence of a book.") == 5000


def test_other_encodings(tmp_path):
    text = "“Smart quotes” – and an em dash — in café prose.\r\nSecond line.\rThird line.\n"
    (tmp_path / "cp1252.txt").write_bytes(text.encode("cp1252"))
    (tmp_path / "utf16.txt").write_bytes(text.encode("utf-16"))
    chinese = "这是一本用简体中文写成的书。第一章讲的是一个小村庄里的故事，村民们每天早上去田里干活。\n" * 40
    (tmp_path / "gb.txt").write_bytes(chinese.encode("gb18030"))
    expected = "“Smart quotes” – and an em dash — in café prose.\nSecond line.\nThird line."
    for name, encoding in [("cp1252.txt", "cp1252"), ("utf16.txt", "utf-16")]:
        docs, rejects, _ = read_all(tmp_path / name)
        assert not rejects and docs[0]["text"] == expected and docs[0]["encoding"] == encoding
    docs, rejects, _ = read_all(tmp_path / "gb.txt")
    assert not rejects and docs[0]["text"] == chinese.strip() and docs[0]["encoding"] in ("gb18030", "gbk", "gb2312")


def test_forced_encoding(tmp_path, shared_data):
    latin1 = shared_data / "books" / "gutenberg" / "pg1661-8.txt"
    docs, rejects, _ = read_all(latin1, encoding="cp1252")
    assert not rejects and docs[0]["encoding"] == "cp1252" and "é" in docs[0]["text"]
    docs, rejects, _ = read_all(latin1, encoding="utf-8")
    assert not docs and rejects[0]["reject_reason"] == "undecodable"


def test_strip_can_be_turned_off(shared_data):
    docs, _, _ = read_all(shared_data / "books" / "gutenberg" / "pg972.txt", strip_gutenberg=False)
    assert docs[0]["text"].startswith("The Project Gutenberg EBook of The Devil's Dictionary")
    assert "FULL LICENSE" in docs[0]["text"] and docs[0]["title"] is None


def test_options_validated_and_directory_expansion(tmp_path):
    with pytest.raises(ConfigError, match="chunk_chars"):
        BookReader.from_config("books", {"chunk_chars": 0}, where="inputs[0].options")
    with pytest.raises(ConfigError, match="encoding"):
        BookReader.from_config("books", {"encoding": "klingon-8"}, where="inputs[0].options")
    with pytest.raises(ConfigError, match="strip_gutenberg"):
        BookReader.from_config("books", {"strip_gutenberg": "yes"}, where="inputs[0].options")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"b"))
    (tmp_path / "c.html").write_text("c")
    found = expand_paths([str(tmp_path)], BookReader)
    assert [Path(p).name for p in found] == ["a.txt", "b.txt.gz"]


def test_utf8_with_a_few_stray_bytes_is_not_garbled(tmp_path):
    good = "“Curly quotes”, naïve café and 中文 survive.\n" * 200
    data = good[:300].encode("utf-8") + b"\xe9" + good[300:].encode("utf-8")  # one stray latin-1 byte
    (tmp_path / "mixed.txt").write_bytes(data)
    docs, rejects, _ = read_all(tmp_path / "mixed.txt")
    assert not rejects and docs[0]["encoding"] == "utf-8-lossy"
    assert docs[0]["text"].count("\ufffd") == 1 and docs[0]["text"].count("中文") == 200
    assert not re.search("Ã|â€", docs[0]["text"])


def test_file_name_that_is_not_utf8(tmp_path):
    raw_path = os.fsencode(tmp_path) + b"/r\xe9sum\xe9.txt"
    with open(raw_path, "wb") as f:
        f.write(b"A short book.\n")
    docs, rejects, _ = read_all(os.fsdecode(raw_path))
    assert not rejects and docs[0]["path"].endswith("r\ufffdsum\ufffd.txt") and docs[0]["text"] == "A short book."
