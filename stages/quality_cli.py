"""``curate quality train``: train the GPT-3-style quality classifier from files.

    curate quality train --positive books/ --positive wiki.jsonl --negative crawl/run1 --output quality.bin

Inputs are read by the pipeline's own readers, chosen by file suffix: books
(``.txt``, ``.txt.gz``: encoding detected, Project Gutenberg boilerplate cut,
chunks of about ``--chunk-chars``), JSONL (``.jsonl``/``.json``/``.ndjson``,
gzipped or not: the ``--text-field``), Parquet (its ``--text-field`` column),
WET (Common Crawl's text), and WARC / ARC / HTML pages, whose main text is
extracted as the ``extract`` stage does. A folder is read file by file (files
of no known suffix are counted and named, never skipped silently); a curate
output folder is read from its ``docs/*.parquet``. Code trees are not read.

Prints, per path, how many documents came from it; warns on a tiny or
unbalanced set (and balances it by default); prints held-out precision,
recall and F1 per label. Exit status: 0 trained, 1 failed (unreadable
input), 2 usage error (missing path, no text, bad option).
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass, field

import click

#: Reader formats chosen by suffix, most specific first (``.warc.wet.gz`` is WET, not WARC).
SUFFIX_FORMATS = ("wet", "warc", "arc", "html", "txt", "jsonl", "parquet")


def format_of(path: str) -> str | None:
    """The reader format a file's suffix names, or None."""
    from curate.readers import reader_class

    name = path.lower()
    for fmt in SUFFIX_FORMATS:
        if name.endswith(reader_class(fmt).suffixes):
            return fmt
    return None


def known_suffixes() -> str:
    """The formats read by suffix, each with its first suffix (the list in full is in ``--help``)."""
    from curate.readers import reader_class

    return ", ".join(f"{reader_class(fmt).suffixes[0]}" for fmt in SUFFIX_FORMATS) + ", gzipped too"


@dataclass
class PathCount:
    """What one ``--positive`` / ``--negative`` argument gave."""

    path: str
    docs: int = 0
    files: Counter = field(default_factory=Counter)
    """Files read, per format."""
    other_files: list[str] = field(default_factory=list)
    """Files in a folder with no reader for their suffix."""
    rejected: Counter = field(default_factory=Counter)
    """Records a reader or the extraction dropped, by reason."""

    def describe(self) -> str:
        formats = ", ".join(f"{n} {fmt}" for fmt, n in sorted(self.files.items()))
        out = f"{self.path}: {self.docs:,} documents from {sum(self.files.values()):,} file(s) ({formats or 'none'})"
        if self.rejected:
            top = ", ".join(f"{reason} {n:,}" for reason, n in self.rejected.most_common(3))
            out += f"; {sum(self.rejected.values()):,} records dropped ({top})"
        if self.other_files:
            names = ", ".join(os.path.basename(p) for p in self.other_files[:3])
            more = f" and {len(self.other_files) - 3} more" if len(self.other_files) > 3 else ""
            out += f"; {len(self.other_files):,} file(s) of no known suffix not read ({names}{more})"
        return out


def expand(path: str, option: str = "--positive") -> tuple[list[tuple[str, str]], list[str]]:
    """``(file, format)`` pairs to read for one argument, and the files of a folder no reader takes."""
    from curate.tokenizers.corpus import is_run_output

    matches = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else [path]
    if not matches or not all(os.path.exists(m) for m in matches):
        raise click.UsageError(f"{option} {path}: no such file or directory")
    files: list[tuple[str, str]] = []
    others: list[str] = []
    for match in matches:
        if os.path.isdir(match):
            if is_run_output(match):
                docs = os.path.join(match, "docs") if os.path.isdir(os.path.join(match, "docs")) else match
                found = sorted(glob.glob(os.path.join(docs, "*.parquet")))
                if not found:
                    raise click.ClickException(f"{match}: a curate output with no documents (no docs/*.parquet: "
                                               "every document was rejected, or the run has not finished)")
                files += [(p, "parquet") for p in found]
                continue
            for folder, dirs, names in os.walk(match):
                dirs.sort()
                for name in sorted(names):
                    full = os.path.join(folder, name)
                    fmt = format_of(full)
                    if fmt is None:
                        others.append(full)
                    else:
                        files.append((full, fmt))
        else:
            fmt = format_of(match)
            if fmt is None:
                raise click.UsageError(f"{option} {match}: no reader for this file name ({known_suffixes()})")
            files.append((match, fmt))
    if not files:
        raise click.UsageError(f"{option} {path}: no input files ({known_suffixes()})")
    return files, others


class _Extractor:
    """The ``extract`` stage, started on the first HTML page (WARC, ARC, HTML inputs)."""

    def __init__(self):
        self.stage = None

    def __call__(self, table):
        if self.stage is None:
            from curate.stages.extract import Extract

            self.stage = Extract.from_config({})
            self.stage.ensure_setup()
        return self.stage.process(table)

    def close(self) -> None:
        sandbox = getattr(self.stage, "sandbox", None)
        if sandbox is not None:
            sandbox.stop()


def _read_file(path: str, fmt: str, *, text_field: str, chunk_chars: int, extract: _Extractor,
               count: PathCount):
    """Yield the texts of one file through its reader (and the extraction, for HTML)."""
    import pyarrow as pa

    from curate.readers import Task, reader_class

    options = {"txt": {"chunk_chars": chunk_chars}, "jsonl": {"text_field": text_field},
               "parquet": {"text_field": text_field}}.get(fmt, {})
    reader = reader_class(fmt).from_config("train", options, where=f"quality train {path}")
    try:
        for batch in reader.read(Task("train", fmt, path)):
            if batch.rejects is not None and batch.rejects.num_rows:
                count.rejected.update(batch.rejects["reject_reason"].to_pylist())
            docs = batch.docs
            if docs is None or not docs.num_rows:
                continue
            if "html" in docs.column_names:
                result = extract(docs)
                reasons = result.reasons.to_pylist() if result.reasons is not None else [None] * docs.num_rows
                count.rejected.update(r for r in reasons if r is not None)
                texts = [t for t, r in zip(result.table["text"].to_pylist(), reasons) if r is None]
            else:
                texts = docs["text"].to_pylist()
            for text in texts:
                if isinstance(text, str) and text.strip():
                    yield text
    except ValueError as err:
        if f"no column {text_field!r}" in str(err):
            raise click.UsageError(f"{err} (--text-field)") from None
        raise click.ClickException(f"{path}: cannot read ({err})") from None
    except (OSError, EOFError, pa.ArrowException) as err:
        raise click.ClickException(f"{path}: cannot read ({type(err).__name__}: {err})") from None


def load_documents(paths: tuple[str, ...] | list[str], *, text_field: str = "text", chunk_chars: int = 2000,
                   limit: int | None = None, option: str = "--positive") -> tuple[list[str], list[PathCount]]:
    """Documents from every path, and what each path gave."""
    texts: list[str] = []
    counts: list[PathCount] = []
    extract = _Extractor()
    try:
        for path in paths:
            files, others = expand(path, option)
            count = PathCount(path, other_files=others)
            counts.append(count)
            for file, fmt in files:
                if limit and len(texts) >= limit:
                    break
                count.files[fmt] += 1
                for text in _read_file(file, fmt, text_field=text_field, chunk_chars=chunk_chars, extract=extract,
                                       count=count):
                    texts.append(text)
                    count.docs += 1
                    if limit and len(texts) >= limit:
                        break
    finally:
        extract.close()
    return texts, counts


def _option_default(name: str):
    import dataclasses

    from curate.classifier import TrainOptions

    return next(f.default for f in dataclasses.fields(TrainOptions) if f.name == name)


def training_options(command):
    """The options every classifier-training command shares, defaults from ``TrainOptions``."""
    options = [
        click.option("--size", type=click.Choice(["small", "large"]), default=_option_default("size"),
                     show_default=True, help="small: 16 dimensions, 100,000 buckets, at most 200,000 words "
                     "(a few MB); large: fastText's 64 x 2,000,000 buckets, every word (about 512 MB)."),
        click.option("--balance", type=click.Choice(["oversample", "none"]), default=_option_default("balance"),
                     show_default=True, help="oversample: repeat the minority label's training documents until "
                     "both labels weigh the same; none: as given."),
        click.option("--test-fraction", default=_option_default("test_fraction"), show_default=True,
                     type=click.FloatRange(0.01, 0.5), help="Seeded share of each label held out for the metrics."),
        click.option("--epoch", default=_option_default("epoch"), show_default=True, type=click.IntRange(1, 1000),
                     help="Passes over the training documents."),
        click.option("--word-ngrams", default=_option_default("word_ngrams"), show_default=True,
                     type=click.IntRange(1, 5),
                     help="Word n-grams (character n-grams for Chinese, which is split into characters)."),
        click.option("--seed", default=_option_default("seed"), show_default=True, type=int,
                     help="Seed of the held-out split, the oversampling and fastText."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_train_options(command: str, **values):
    """The ``TrainOptions`` of a ``quality train`` / ``detox train`` call; a bad value is a usage error (exit 2)."""
    from curate.classifier import TrainOptions
    from curate.params import ConfigError, build_params

    try:
        return build_params(TrainOptions, values, where=command)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None


def check_output(output: str) -> None:
    """``--output`` must name a file: refuse a folder before any training time is spent."""
    if os.path.isdir(output):
        raise click.UsageError(f"--output {output}: is a folder; give a file path such as "
                               f"{os.path.join(output, 'model.bin')}")
    parent = os.path.dirname(os.path.abspath(output))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise click.UsageError(f"--output {output}: {parent} is a file, not a folder")


def report_lines(report, names: dict[int, str]) -> list[str]:
    """The held-out metrics and what training did, as the commands print them."""
    test = report.test_docs
    lines = [f"held out {test.get(1, 0):,} {names[1]} and {test.get(0, 0):,} {names[0]} documents; trained on "
             f"{report.train_docs.get(1, 0):,} and {report.train_docs.get(0, 0):,}"
             + (f" ({report.balanced})" if report.balanced else " (not balanced)")]
    lines.append(f"precision {report.precision:.3f}  recall {report.recall:.3f}  F1 {report.f1:.3f}  "
                 f"accuracy {report.accuracy:.3f}  (label 1 = {names[1]})")
    return lines


def print_training(report, names: dict[int, str], output: str, seconds: float) -> None:
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in report_lines(report, names):
        click.echo(line)
    click.echo(f"model written to {output} ({report.model_bytes / 1e6:.1f} MB, --size {report.size}; "
               f"{seconds:.1f}s)")


@click.group("quality")
def quality() -> None:
    """Model-based quality scoring (GPT-3 style)."""


@quality.command("train")
@click.option("--positive", "positive", multiple=True, required=True, metavar="PATH",
              help="Reference-quality text (books, Wikipedia): files, folders, globs, curate outputs; repeatable.")
@click.option("--negative", "negative", multiple=True, required=True, metavar="PATH",
              help="Text to score low (raw crawl: WARC/WET files or a curate output); repeatable.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Where to write the model (.bin).")
@click.option("--text-field", default="text", show_default=True, help="Text field of JSONL/Parquet inputs.")
@click.option("--chunk-chars", default=2000, show_default=True, type=click.IntRange(min=100),
              help="Cut .txt books into documents of about this many characters.")
@click.option("--max-docs", default=None, type=click.IntRange(min=1),
              help="At most this many documents per side (default: all).")
@training_options
def train(positive, negative, output, text_field, chunk_chars, max_docs, size, balance, test_fraction, epoch,
          word_ngrams, seed) -> None:
    """Train a fastText quality classifier and print held-out precision and recall."""
    import time

    from curate.stages.quality import train_quality_model

    check_output(output)
    options = build_train_options("quality train", size=size, balance=balance, test_fraction=test_fraction,
                                  epoch=epoch, word_ngrams=word_ngrams, seed=seed)
    started = time.perf_counter()
    sides = {}
    for side, paths in (("positive", positive), ("negative", negative)):
        texts, counts = load_documents(paths, text_field=text_field, chunk_chars=chunk_chars, limit=max_docs,
                                       option=f"--{side}")
        for count in counts:
            click.echo(f"{side} {count.describe()}")
        sides[side] = texts
    pos, neg = sides["positive"], sides["negative"]
    if not pos or not neg:
        raise click.UsageError(f"no text found: {len(pos)} positive and {len(neg)} negative documents")
    click.echo(f"training on {len(pos):,} positive and {len(neg):,} negative documents")
    try:
        report = train_quality_model(pos, neg, output, options)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    print_training(report, {1: "positive", 0: "negative"}, output, time.perf_counter() - started)


if __name__ == "__main__":
    quality()
