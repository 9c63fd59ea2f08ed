"""How much Chinese text a vocabulary extension needs, and what capping the piece length costs.

    .venv/bin/python -m curate.benchmarks.extend_sample [--data ../shared/data] [--chinese-llama chinese_sp.model]

Trains the extension's Chinese BPE model (the settings ``curate tokenizer extend`` uses) on growing
prefixes of the real Chinese text in ../shared/data (CMRC Wikipedia paragraphs and the two Gutenberg
novels, shuffled by paragraph), and prints for each vocabulary size and sample size:
  * characters of text per piece asked,
  * the share of multi-character pieces used fewer than 3 times when the model encodes its own
    training sample (a piece seen once or twice is a memorised string, not a word),
  * pieces of 5 or more and 10 or more characters,
  * tokens per character on UD Chinese sentences the model never saw.
Then the piece-length cap (``max_piece_chars``) on the largest sample: 4, 6 and 16 (SentencePiece's own).
``--chinese-llama`` prints the piece lengths of Chinese-LLaMA's ``chinese_sp.model`` (from
ymcui/Chinese-LLaMA-Alpaca, scripts/merge_tokenizer/) for comparison; nothing is downloaded here.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import re
from collections import Counter
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from curate.tokenizers.params import SPACE, TrainParams
from curate.tokenizers.train import train_model

REPO = Path(__file__).resolve().parent.parent


def chinese_lines(data: Path) -> list[str]:
    with open(data / "chinese/cmrc2018-wikipedia/paragraphs.jsonl", encoding="utf-8") as f:
        paragraphs = [json.loads(line)["text"] for line in f if line.strip()]
    for path in sorted(glob.glob(str(data / "chinese/gutenberg-zh/*.txt"))):
        text = open(path, encoding="utf-8-sig").read()
        paragraphs += [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    random.Random(0).shuffle(paragraphs)
    return [line for p in paragraphs for line in p.split("\n") if line.strip()]


def lengths(proto: model_pb2.ModelProto) -> Counter:
    return Counter(len(p.piece.lstrip(SPACE)) for p in proto.pieces if p.type == p.NORMAL)


def measure(lines: list[str], vocab: int, max_chars: int, heldout: list[str]) -> dict:
    params = TrainParams(vocab_size=vocab, model_type="bpe", byte_fallback=False, normalization="identity",
                         unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, threads=2)
    model = train_model(iter(lines), params, hard_vocab_limit=False, max_sentencepiece_length=max_chars)
    proto = model_pb2.ModelProto()
    proto.ParseFromString(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    used = Counter(i for ids in sp.encode(lines) for i in ids)
    multi = [i for i in range(sp.get_piece_size()) if len(sp.id_to_piece(i).lstrip(SPACE)) >= 2]
    by_length = lengths(proto)
    return {"pieces": sp.get_piece_size(), "multi": len(multi),
            "rare_share": sum(1 for i in multi if used[i] < 3) / max(len(multi), 1),
            "ge5": sum(n for k, n in by_length.items() if k >= 5),
            "ge10": sum(n for k, n in by_length.items() if k >= 10),
            "heldout_tokens_per_char": sum(map(len, sp.encode(heldout))) / sum(len(s) for s in heldout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--chinese-llama", default=None, help="Path of Chinese-LLaMA's chinese_sp.model.")
    args = parser.parse_args()
    data = Path(args.data)
    lines = chinese_lines(data)
    with open(data / "chinese/ud-chinese-gsdsimp/sentences.jsonl", encoding="utf-8") as f:
        heldout = [json.loads(line)["text"] for line in f if line.strip()]
    print("| vocab | sample chars | chars per piece | pieces | multi-char pieces used < 3 times | >= 5 chars | "
          ">= 10 chars | UD tokens/char |")
    print("|---|---|---|---|---|---|---|---|")
    for vocab, sizes in ((5000, (25_000, 75_000, 250_000)), (20000, (5_000, 100_000, 300_000, 1_000_000))):
        for chars in sizes:
            sample, n = [], 0
            for line in lines:
                if n >= chars:
                    break
                sample.append(line)
                n += len(line)
            r = measure(sample, vocab, 16, heldout)
            print(f"| {vocab:,} | {n:,} | {n / vocab:.0f} | {r['pieces']:,} | {r['rare_share']:.0%} | {r['ge5']:,} | "
                  f"{r['ge10']:,} | {r['heldout_tokens_per_char']:.4f} |", flush=True)
    print("\n| max_piece_chars (20,000 pieces, 1,000,000 chars) | >= 5 chars | UD tokens/char |")
    print("|---|---|---|")
    sample, n = [], 0
    for line in lines:
        if n >= 1_000_000:
            break
        sample.append(line)
        n += len(line)
    for cap in (4, 6, 16):
        r = measure(sample, 20000, cap, heldout)
        print(f"| {cap} | {r['ge5']:,} | {r['heldout_tokens_per_char']:.4f} |", flush=True)
    if args.chinese_llama:
        proto = model_pb2.ModelProto()
        proto.ParseFromString(open(args.chinese_llama, "rb").read())
        by_length = lengths(proto)
        total = sum(by_length.values())
        print("\nChinese-LLaMA chinese_sp.model, pieces by length:",
              ", ".join(f"{k}: {n:,}" for k, n in sorted(by_length.items())),
              f"(<= 4: {sum(n for k, n in by_length.items() if k <= 4) / total:.1%})")


if __name__ == "__main__":
    main()
