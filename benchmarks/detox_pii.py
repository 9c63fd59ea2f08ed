"""Benchmark the detox and pii stages: MB/s on one core, and word-list quality against the C4 rule.

    .venv/bin/python -m curate.benchmarks.detox_pii [--data ../shared/data] [--repeat 3] [--datatrove]

Throughput runs one process (one core) over real text (Gutenberg paragraphs,
Chinese Wikipedia/Gutenberg paragraphs, stdlib code blocks) and prints a RATIO
against a baseline timed in the same run, since the machine is shared:
  * detox vs the C4 rule (one Python regex of all LDNOOBW en words per document,
    plus substring tests of the zh words): what C4 and datatrove-style filters do;
  * pii vs a datatrove-style formatter (its email and IPv4 regexes, ``re.sub`` on
    every document, no checksum checks), which covers two of our six types.
``--datatrove`` also times datatrove itself (its ``C4BadWordsFilter`` and
``PIIFormatter``) in a separate venv under /tmp (created with pip on first use;
its LDNOOBW download is pointed at ../shared/data/badwords/ldnoobw, the same lists)
and scores its C4 filter on the labelled sets.
Quality: precision/recall/F1 and false positives of the default word lists and
of LDNOOBW "drop on any match", per language, on ../shared/data/toxicity; and the
held-out metrics of a fastText classifier trained with ``train_toxicity_model``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.classifier import binary_metrics
from curate.stages.detox import Detox, train_toxicity_model
from curate.stages.pii import Pii

REPO = Path(__file__).resolve().parent.parent


def paragraphs(path: str) -> list[str]:
    raw = open(path, "rb").read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [p.strip() for p in re.split(r"\r?\n\s*\r?\n", text) if p.strip()]


def corpora(data: Path) -> dict[str, list[str]]:
    english = [p for f in sorted(glob.glob(str(data / "books/gutenberg/*.txt"))) for p in paragraphs(f)]
    with open(data / "chinese/cmrc2018-wikipedia/paragraphs.jsonl", encoding="utf-8") as f:
        chinese = [json.loads(line)["text"] for line in f if line.strip()]
    chinese += [p for f in sorted(glob.glob(str(data / "chinese/gutenberg-zh/*.txt"))) for p in paragraphs(f)]
    stdlib = sysconfig.get_paths()["stdlib"]
    code = []
    for path in sorted(glob.glob(stdlib + "/*.py")):
        code += [b for b in re.split(r"\n\s*\n", open(path, encoding="utf-8", errors="replace").read()) if b.strip()]
    return {"books (en)": english, "wiki+books (zh)": chinese, "code (py stdlib)": code}


def ldnoobw(data: Path, lang: str) -> list[str]:
    return [w.strip().lower() for w in (data / f"badwords/ldnoobw/{lang}.txt").read_text("utf-8").splitlines() if w.strip()]


def c4_rule(data: Path):
    en_words, zh_words = ldnoobw(data, "en"), ldnoobw(data, "zh")
    pattern = re.compile(r"(?:\W|^)(%s)(?:\W|$)" % "|".join(map(re.escape, sorted(en_words, key=len, reverse=True))))

    def flag(texts: list[str], cjk: bool | None = None) -> np.ndarray:
        out = np.zeros(len(texts), dtype=bool)
        for i, text in enumerate(texts):
            lower = text.lower()
            if cjk is not True and pattern.search(lower):
                out[i] = True
            elif cjk is not False and any(w in lower for w in zh_words):
                out[i] = True
        return out

    return flag


# datatrove's PIIFormatter patterns (email, IPv4), re-typed from its documented behaviour.
BASE_EMAIL = re.compile(r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
                        r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
BASE_IP = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(?:25[0-5]|2[0-4]\d|[01]?\d\d?)")


def baseline_pii(texts: list[str]) -> list[str]:
    return [BASE_IP.sub("<IP>", BASE_EMAIL.sub("<EMAIL>", t)) for t in texts]


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(data: Path, repeat: int) -> None:
    detox, pii = Detox.from_config({}), Pii.from_config({})
    detox.ensure_setup()
    pii.ensure_setup()
    flag = c4_rule(data)
    print("\n## Throughput (one core, best of %d)\n" % repeat)
    print("| corpus | MB | detox MB/s | C4 rule MB/s | ratio | pii MB/s | datatrove-style MB/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, texts in corpora(data).items():
        table = pa.table({"text": pa.array(texts, pa.string())})
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        t_detox = best_of(repeat, lambda: detox.process(table))
        t_c4 = best_of(repeat, lambda: flag(texts))
        t_pii = best_of(repeat, lambda: pii.process(table))
        t_base = best_of(repeat, lambda: baseline_pii(texts))
        print(f"| {name} | {mb:.1f} | {mb / t_detox:.1f} | {mb / t_c4:.1f} | {t_c4 / t_detox:.2f}x "
              f"| {mb / t_pii:.1f} | {mb / t_base:.1f} | {t_base / t_pii:.2f}x |")


def labelled(data: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    with open(data / "toxicity/davidson-en/labeled_data.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    en = ([r["tweet"] for r in rows], np.array([r["class"] != "2" for r in rows]))
    with open(data / "toxicity/cold-zh/dev.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    zh = ([r["TEXT"] for r in rows], np.array([r["label"] == "1" for r in rows]))
    return {"en": en, "zh": zh}


def quality(data: Path) -> None:
    detox = Detox.from_config({})
    detox.ensure_setup()
    flag = c4_rule(data)
    print("\n## Word lists on ../shared/data/toxicity (dev split)\n")
    print("| lang | filter | precision | recall | F1 | false positives |")
    print("|---|---|---|---|---|---|")
    sets = labelled(data)
    for lang, (texts, truth) in sets.items():
        reasons = detox.process(pa.table({"text": pa.array(texts, pa.string())})).reasons.to_pylist()
        ours = np.array([r is not None for r in reasons])
        base = flag(texts, cjk=lang == "zh")
        for label, predicted in (("curate default lists", ours), ("C4 rule (any LDNOOBW match)", base)):
            m = binary_metrics(truth, predicted)
            print(f"| {lang} | {label} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} | {int(np.sum(~truth & predicted))} |")
    print("\n## fastText classifier (train_toxicity_model, 10% held out)\n")
    print("| lang | precision | recall | F1 | train seconds |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for lang, (texts, truth) in sets.items():
            source = Path(tmp) / f"{lang}.jsonl"
            with open(source, "w", encoding="utf-8") as f:
                for text, label in zip(texts, truth):
                    f.write(json.dumps({"text": text, "label": int(label)}, ensure_ascii=False) + "\n")
            start = time.perf_counter()
            m = train_toxicity_model(str(source), str(Path(tmp) / f"{lang}.bin"))
            print(f"| {lang} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} | {time.perf_counter() - start:.1f} |")


DATATROVE_VENV = Path(tempfile.gettempdir()) / "curate-bench-datatrove"
DATATROVE_SCRIPT = r"""
import json, sys, time
import datatrove.pipeline.filters.c4_filters as c4
from datatrove.data import Document
from datatrove.pipeline.formatters.pii import PIIFormatter
request = json.load(open(sys.argv[1], encoding="utf-8"))
ldnoobw = request["ldnoobw"]
c4.cached_asset_path_or_download = lambda url, **kw: f"{ldnoobw}/{url.rstrip('/').rsplit('/', 1)[-1]}.txt"
out = {"seconds": {}, "flags": {}}
def best(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return min(times)
for name, (texts, lang) in request["corpora"].items():
    flt = c4.C4BadWordsFilter(default_language=lang)
    pii = PIIFormatter()
    docs = [Document(text=t, id=str(i), metadata={"language": lang}) for i, t in enumerate(texts)]
    out["seconds"][name] = [best(lambda: [flt.filter(d) for d in docs], request["repeat"]),
                            best(lambda: [pii.format(t) for t in texts], request["repeat"])]
for name, (texts, lang) in request["labelled"].items():
    flt = c4.C4BadWordsFilter(default_language=lang)
    out["flags"][name] = [flt.filter(Document(text=t, id=str(i), metadata={"language": lang})) is not True
                          for i, t in enumerate(texts)]
json.dump(out, open(sys.argv[2], "w"))
"""


def datatrove_python() -> str:
    python = DATATROVE_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {DATATROVE_VENV} with datatrove (pip) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DATATROVE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "datatrove"], check=True)
    return str(python)


def compare_datatrove(data: Path, repeat: int) -> None:
    detox, pii = Detox.from_config({}), Pii.from_config({})
    detox.ensure_setup()
    pii.ensure_setup()
    texts_by_corpus = corpora(data)
    langs = {"books (en)": "en", "wiki+books (zh)": "zh", "code (py stdlib)": "en"}
    sets = labelled(data)
    with tempfile.TemporaryDirectory() as tmp:
        request, answer = os.path.join(tmp, "request.json"), os.path.join(tmp, "answer.json")
        with open(request, "w", encoding="utf-8") as f:
            json.dump({"ldnoobw": str(data / "badwords/ldnoobw"), "repeat": repeat,
                       "corpora": {k: [v, langs[k]] for k, v in texts_by_corpus.items()},
                       "labelled": {k: [v[0], k] for k, v in sets.items()}}, f, ensure_ascii=False)
        subprocess.run([datatrove_python(), "-c", DATATROVE_SCRIPT, request, answer], check=True)
        theirs = json.load(open(answer, encoding="utf-8"))
    print("\n## Against datatrove itself (same process conditions, one core)\n")
    print("| corpus | detox MB/s | datatrove C4BadWordsFilter MB/s | ratio | pii MB/s | datatrove PIIFormatter MB/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, texts in texts_by_corpus.items():
        table = pa.table({"text": pa.array(texts, pa.string())})
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        t_detox = best_of(repeat, lambda: detox.process(table))
        t_pii = best_of(repeat, lambda: pii.process(table))
        t_c4, t_fmt = theirs["seconds"][name]
        print(f"| {name} | {mb / t_detox:.1f} | {mb / t_c4:.1f} | {t_c4 / t_detox:.2f}x | {mb / t_pii:.1f} "
              f"| {mb / t_fmt:.1f} | {t_fmt / t_pii:.2f}x |")
    print("\n| lang | datatrove C4BadWordsFilter precision | recall | F1 | false positives |")
    print("|---|---|---|---|---|")
    for lang, (texts, truth) in sets.items():
        predicted = np.array(theirs["flags"][lang])
        m = binary_metrics(truth, predicted)
        print(f"| {lang} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} | {int(np.sum(~truth & predicted))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--datatrove", action="store_true", help="also time datatrove in a venv under /tmp")
    args = parser.parse_args()
    throughput(args.data, args.repeat)
    quality(args.data)
    if args.datatrove:
        compare_datatrove(args.data, args.repeat)


if __name__ == "__main__":
    main()
