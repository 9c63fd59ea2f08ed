"""Documents per CPU-second of the default per-document rules: today's code against the code before #16.

Run by hand from a git checkout (about two minutes on 2 shared cores):

    .venv/bin/python -m curate.benchmarks.rules_throughput [--repeat 3] [--baseline 065d052]

What runs: ``langid`` (en, zh), ``gopher_repetition``, ``gopher_quality``, ``c4`` and ``fineweb``
with their defaults, in the default pipeline's order, on batches of 1,000 rows, each batch
losing the rows a stage rejects before the next stage sees it, as the runner does. One
process, one core; the figure is CPU time of this process (``time.process_time``) per stage,
the median of ``--repeat`` rounds, because the machine is shared and wall time is noise.

The baseline is the same stages as they were at ``--baseline`` (the commit before #16's rule
changes), read with ``git show`` into a private package and run in the same process, round
after round alternately with today's code; caches are emptied before each round, so neither
side reuses the other's work. Both sides must reach the same decisions and signals (floats
within 1e-5): the script stops otherwise.

Text: all the distinct text of ../shared/data that is prose (each document once): the
keep_good_text sets (novels cut into chunks with and without their printed line breaks,
Chinese Wikipedia passages and novels, boilerplate of real pages, generated junk), the
visible text of every html_extraction page (menus and all, as a WET record holds it), and
the Lingua sentences of 75 languages, 20 to a document.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
#: The last commit before #16 changed the rules.
BASELINE = "065d052"
MODULES = ("textstats", "langid", "gopher", "c4", "fineweb")
STAGES = ("langid", "gopher_repetition", "gopher_quality", "c4", "fineweb")


def documents(data: Path = SHARED) -> list[str]:
    from curate.benchmarks.keep_good_text import build_sets, page_text

    docs = [d for _, texts in build_sets(data).values() for d in texts]
    for path in sorted((data / "html_extraction").rglob("*.html.gz")):
        if path.name != "expected.html.gz":
            docs.append(page_text(gzip.decompress(path.read_bytes()).decode("utf-8", "replace")))
    for path in sorted((data / "langid" / "lingua" / "sentences").glob("*.txt")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        docs += [" ".join(lines[i:i + 20]) for i in range(0, len(lines), 20)]
    return [d for d in docs if d.strip()]


def baseline_package(commit: str) -> types.ModuleType:
    """The rule modules as they were at ``commit``, importable as ``curate_rules_baseline.<name>``."""
    folder = Path(tempfile.mkdtemp(prefix="curate-rules-baseline-")) / "curate_rules_baseline"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name in MODULES:
        try:
            source = subprocess.run(["git", "show", f"{commit}:stages/{name}.py"], cwd=REPO, check=True,
                                    capture_output=True, text=True).stdout
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            sys.exit(f"rules_throughput: cannot read stages/{name}.py at {commit} (needs a git checkout): {err}")
        for other in MODULES:
            source = source.replace(f"from curate.stages.{other} import", f"from curate_rules_baseline.{other} import")
        (folder / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder.parent))
    import curate_rules_baseline

    return curate_rules_baseline


def make_stages(package: str) -> list:
    from importlib import import_module

    from curate.params import build_params

    langid = import_module(f"{package}.langid")
    gopher = import_module(f"{package}.gopher")
    c4 = import_module(f"{package}.c4")
    fineweb = import_module(f"{package}.fineweb")
    stages = [langid.LangId(build_params(langid.LangId.Params, {"languages": ["en", "zh"]}, where="langid")),
              gopher.GopherRepetition(), gopher.GopherQuality(), c4.C4Quality(), fineweb.FineWebQuality()]
    for stage in stages:
        stage.ensure_setup()
    return stages


def clear_caches(package: str) -> None:
    from importlib import import_module

    textstats = import_module(f"{package}.textstats")
    for name in ("_jieba_words",):  # the baseline's per-text LRU
        if hasattr(textstats, name):
            getattr(textstats, name).cache_clear()
    if hasattr(textstats, "WORDS"):
        textstats.WORDS.clear()


def run_pipeline(stages: list, texts: list[str], batch: int = 1000) -> tuple[dict[str, float], list[pa.Table]]:
    """CPU seconds per stage, and each stage's output rows (signals and reason) for comparison."""
    cpu: Counter = Counter()
    outputs: dict[str, list[pa.Table]] = {s.name: [] for s in stages}
    for lo in range(0, len(texts), batch):
        table = pa.table({"row": np.arange(lo, min(lo + batch, len(texts))), "text": texts[lo:lo + batch]})
        for stage in stages:
            started = time.process_time()
            result = stage.process(table)
            cpu[stage.name] += time.process_time() - started
            reasons = result.reasons if result.reasons is not None else pa.nulls(result.table.num_rows, pa.string())
            outputs[stage.name].append(result.table.append_column("reason", pa.array(reasons, pa.string())))
            keep = pc.is_null(reasons)
            table = result.table.filter(keep).select(["row", "text"] + (["lang"] if "lang" in result.table.column_names else []))
            if table.num_rows == 0:
                break
    return dict(cpu), [pa.concat_tables(outputs[s.name]) for s in stages]


def compare(ours: list[pa.Table], theirs: list[pa.Table]) -> list[str]:
    """Differences in rows, reasons, text and signals between the two sides (empty: the same)."""
    problems = []
    for a, b in zip(ours, theirs):
        stage = [c for c in a.column_names if c not in ("row", "text", "reason")]
        if a.num_rows != b.num_rows or a["row"] != b["row"]:
            problems.append(f"{stage}: different rows reach the stage")
            continue
        if a["reason"] != b["reason"]:
            problems.append(f"{stage}: {sum(x != y for x, y in zip(a['reason'].to_pylist(), b['reason'].to_pylist()))} reasons differ")
        if a["text"] != b["text"]:
            problems.append(f"{stage}: text differs")
        for name in b.column_names:
            if name in ("row", "text", "reason"):
                continue
            x, y = a[name], b[name]
            if pa.types.is_floating(y.type):
                fx = np.nan_to_num(x.to_numpy(zero_copy_only=False).astype(np.float64), nan=-1)
                fy = np.nan_to_num(y.to_numpy(zero_copy_only=False).astype(np.float64), nan=-1)
                if not np.allclose(fx, fy, rtol=1e-5, atol=1e-6):
                    problems.append(f"{name}: {int((~np.isclose(fx, fy, rtol=1e-5, atol=1e-6)).sum())} values differ")
            elif x != y:
                problems.append(f"{name}: differs")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="commit whose stages/ are the baseline")
    parser.add_argument("--limit", type=int, default=0, help="only the first N documents (a quick look)")
    parser.add_argument("--every", type=int, default=1, help="every K-th document (a quick look at the whole mix)")
    args = parser.parse_args()

    texts = documents()[::max(1, args.every)]
    if args.limit:
        texts = texts[:args.limit]
    size = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    from curate.stages.textstats import cjk_ratio

    cjk = int((cjk_ratio(pa.array(texts, pa.string())) >= 0.3).sum())
    print(f"{len(texts):,} documents, {size:.1f} MB, {cjk:,} of them mostly Chinese or Japanese")
    baseline_package(args.baseline)
    sides = {"before": "curate_rules_baseline", "now": "curate.stages"}
    stages = {side: make_stages(package) for side, package in sides.items()}
    times: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    outputs = {}
    for round_ in range(args.repeat):
        for side, package in (sides.items() if round_ % 2 == 0 else reversed(sides.items())):
            clear_caches(package)
            cpu, outputs[side] = run_pipeline(stages[side], texts)
            times[side].append(cpu)
        print(f"round {round_ + 1}: before {sum(times['before'][-1].values()):.1f} s, now {sum(times['now'][-1].values()):.1f} s (CPU)")
    problems = compare(outputs["now"], outputs["before"])
    if problems:
        sys.exit("rules_throughput: today's code does not decide as the baseline did:\n  " + "\n  ".join(problems))
    reached = {name: table.num_rows for name, table in zip(STAGES, outputs["now"])}
    print(f"\nsame decisions, text and signals (floats within 1e-5) on every row; median of {args.repeat} rounds, CPU s:")
    print(f"{'stage':20s} {'docs in':>8s} {'before s':>9s} {'now s':>8s} {'before docs/s':>14s} {'now docs/s':>11s} {'ratio':>6s}")
    total = {side: 0.0 for side in sides}
    for name in STAGES:
        med = {side: statistics.median(t.get(name, 0.0) for t in times[side]) for side in sides}
        for side in sides:
            total[side] += med[side]
        docs = reached[name]
        print(f"{name:20s} {docs:8,d} {med['before']:9.2f} {med['now']:8.2f} {docs / med['before']:14,.0f} "
              f"{docs / med['now']:11,.0f} {med['before'] / med['now']:5.2f}x")
    rules = [n for n in STAGES if n != "langid"]
    rule_before = sum(statistics.median(t.get(n, 0.0) for t in times["before"]) for n in rules)
    rule_now = sum(statistics.median(t.get(n, 0.0) for t in times["now"]) for n in rules)
    print(f"{'rules (no langid)':20s} {'':8s} {rule_before:9.2f} {rule_now:8.2f} {'':14s} {'':11s} {rule_before / rule_now:5.2f}x")
    print(f"{'all five':20s} {len(texts):8,d} {total['before']:9.2f} {total['now']:8.2f} {len(texts) / total['before']:14,.0f} "
          f"{len(texts) / total['now']:11,.0f} {total['before'] / total['now']:5.2f}x")
    spread = {side: [sum(t.values()) for t in times[side]] for side in sides}
    print(f"round totals (noise): before {', '.join(f'{s:.1f}' for s in spread['before'])}; "
          f"now {', '.join(f'{s:.1f}' for s in spread['now'])}")


if __name__ == "__main__":
    main()
