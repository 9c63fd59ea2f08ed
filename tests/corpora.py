"""Real text from ../shared/data cut into documents, shared by the tests (``curate.tests.corpora``)."""

from __future__ import annotations

import glob
import json
import re


def book_paragraphs(shared_data) -> list[str]:
    """Paragraphs of the Gutenberg books' bodies: the license boilerplate around them holds real contact details."""
    paragraphs = []
    for path in sorted(glob.glob(str(shared_data / "books/gutenberg/*.txt"))):
        raw = open(path, "rb").read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        start = re.search(r"\*\*\* ?START OF.*\n", text)
        end = re.search(r"\*\*\* ?END OF", text)
        body = text[start.end() if start else 0: end.start() if end else len(text)]
        paragraphs += [p.strip() for p in re.split(r"\r?\n\s*\r?\n", body) if p.strip()]
    return paragraphs


def chinese_paragraphs(shared_data) -> list[str]:
    with open(shared_data / "chinese/cmrc2018-wikipedia/paragraphs.jsonl", encoding="utf-8") as f:
        paragraphs = [json.loads(line)["text"] for line in f if line.strip()]
    for path in sorted(glob.glob(str(shared_data / "chinese/gutenberg-zh/*.txt"))):
        text = open(path, encoding="utf-8-sig").read()
        paragraphs += [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return paragraphs


def read_text_file(path: str) -> str:
    """A Gutenberg file: UTF-8 (with or without BOM), else Latin-1."""
    raw = open(path, "rb").read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def chunk_text(text: str, chunk_chars: int) -> list[str]:
    """Whole paragraphs grouped into documents of about ``chunk_chars`` characters."""
    chunks, current, size = [], [], 0
    for paragraph in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        paragraph = paragraph.strip()
        if paragraph:
            current.append(paragraph)
            size += len(paragraph)
            if size >= chunk_chars:
                chunks.append("\n\n".join(current))
                current, size = [], 0
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def train_book_tokenizer(shared_data, output: str, vocab_size: int = 4000, sample_bytes: int = 1_000_000,
                         **options) -> str:
    """A small SentencePiece model trained on the English and Chinese Gutenberg books; returns its path.

    The tokenize, pool and export tests each need one: English and Chinese text, no held-out split.
    """
    from curate.tokenizers.corpus import input_files
    from curate.tokenizers.train import TrainParams, train_tokenizer

    files = input_files([str(shared_data / "books" / "gutenberg"), str(shared_data / "chinese" / "gutenberg-zh")],
                        "txt")
    train_tokenizer(files, output, TrainParams(vocab_size=vocab_size, sample_bytes=sample_bytes,
                                               heldout_fraction=0.0, **options))
    return f"{output}/tokenizer.model"
