"""``curate quality train``: train the GPT-3-style quality classifier from files.

    curate quality train --positive books/ --positive wiki.jsonl --negative crawl/run1 --output quality.bin

Inputs: ``.txt`` files (cut into documents of about ``--chunk-chars`` at
paragraph breaks), ``.jsonl`` / ``.jsonl.gz`` (the ``--text-field`` of each
line), ``.parquet`` (its text column), folders of those, or a curate output
folder (its ``docs/*.parquet``). Prints held-out precision, recall and F1.
Exit status: 0 trained, 2 usage error (bad path, no text, bad option).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re

import click

TEXT_SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".json", ".parquet")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def read_text_file(path: str) -> str:
    raw = open(path, "rb").read()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def chunk_text(text: str, chunk_chars: int) -> list[str]:
    """Whole paragraphs grouped into documents of about ``chunk_chars`` characters."""
    chunks, current, size = [], [], 0
    for paragraph in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        current.append(paragraph)
        size += len(paragraph)
        if size >= chunk_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def expand(path: str) -> list[str]:
    matches = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else [path]
    files: list[str] = []
    for match in matches:
        if os.path.isdir(match):
            docs = os.path.join(match, "docs")
            root = docs if os.path.isdir(docs) else match
            for folder, dirs, names in os.walk(root):
                dirs.sort()
                files += [os.path.join(folder, n) for n in sorted(names) if n.lower().endswith(TEXT_SUFFIXES)]
        elif os.path.isfile(match):
            files.append(match)
    if not files:
        raise click.UsageError(f"no input files at {path!r} (expected {', '.join(TEXT_SUFFIXES)} files or folders)")
    return files


def load_texts(paths: tuple[str, ...] | list[str], *, text_field: str = "text", chunk_chars: int = 2000,
               limit: int | None = None) -> list[str]:
    """Documents from txt / jsonl / parquet files, folders, or curate output folders."""
    import pyarrow.parquet as pq

    texts: list[str] = []
    for path in paths:
        for file in expand(path):
            name = file.lower()
            try:
                if name.endswith(".parquet"):
                    table = pq.read_table(file, columns=[text_field])
                    texts += [t for t in table[text_field].to_pylist() if t]
                elif name.endswith((".jsonl", ".jsonl.gz", ".json")):
                    opener = gzip.open if name.endswith(".gz") else open
                    with opener(file, "rt", encoding="utf-8") as f:
                        for line in f:
                            if line.strip():
                                row = json.loads(line)
                                value = row.get(text_field) if isinstance(row, dict) else None
                                if isinstance(value, str) and value.strip():
                                    texts.append(value)
                else:
                    texts += chunk_text(read_text_file(file), chunk_chars)
            except (OSError, ValueError, KeyError) as err:
                raise click.UsageError(f"cannot read {file}: {err}") from None
            if limit and len(texts) >= limit:
                return texts[:limit]
    return texts


@click.group("quality")
def quality() -> None:
    """Model-based quality scoring (GPT-3 style)."""


@quality.command("train")
@click.option("--positive", "positive", multiple=True, required=True, metavar="PATH",
              help="Reference-quality text (books, Wikipedia); repeat for more paths.")
@click.option("--negative", "negative", multiple=True, required=True, metavar="PATH",
              help="Text to score low (raw crawl); repeat for more paths.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Where to write the model (.bin).")
@click.option("--text-field", default="text", show_default=True, help="Text field of JSONL/Parquet inputs.")
@click.option("--chunk-chars", default=2000, show_default=True, type=click.IntRange(min=100),
              help="Cut .txt files into documents of about this many characters.")
@click.option("--max-docs", default=None, type=click.IntRange(min=1), help="At most this many documents per side.")
@click.option("--test-fraction", default=0.1, show_default=True, type=click.FloatRange(0.01, 0.5))
@click.option("--epoch", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
def train(positive, negative, output, text_field, chunk_chars, max_docs, test_fraction, epoch, seed) -> None:
    """Train a fastText quality classifier and print held-out precision and recall."""
    from curate.stages.quality import train_quality_model

    pos = load_texts(positive, text_field=text_field, chunk_chars=chunk_chars, limit=max_docs)
    neg = load_texts(negative, text_field=text_field, chunk_chars=chunk_chars, limit=max_docs)
    if not pos or not neg:
        raise click.UsageError(f"no text found: {len(pos)} positive and {len(neg)} negative documents")
    click.echo(f"training on {len(pos)} positive and {len(neg)} negative documents")
    metrics = train_quality_model(pos, neg, output, test_fraction=test_fraction, seed=seed, epoch=epoch)
    click.echo(str(metrics))
    click.echo(f"model written to {output}")


if __name__ == "__main__":
    quality()
