"""Open and check the folders a report is drawn from: a run, a token folder, a mixture, training runs.

Each opener checks only what the report needs and raises ``DashboardError`` (a ``ConfigError``:
``curate`` prints it on one line and exits 2) naming the file and, where there is one, the key.
Nothing here reads documents: runs and token folders are handed to DuckDB as Parquet globs; the
mixture and training files are small JSON.

A run and a token folder may be in an object store (``s3://bucket/run/``, as ``curate run`` and
``curate tokenize`` write them there): they are read through ``curate.storage``. A mixture and
training runs are local folders (``curate mix`` and ``curate train`` write only there).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Any

from curate import storage
from curate.dashboards.signals import StageConfig, run_stages
from curate.params import ConfigError
from curate.stats import MANIFEST, read_manifest


class DashboardError(ConfigError):
    """An input folder that the report cannot be drawn from (wrong kind, empty, unreadable)."""


def _read_json(path: str) -> Any:
    try:
        return storage.read_json(path)
    except json.JSONDecodeError as err:
        raise DashboardError(f"not valid JSON (line {err.lineno}: {err.msg})", file=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DashboardError(f"cannot read ({err.__class__.__name__}: {err})", file=path) from None


def _local_only(path: str, what: str, command: str) -> None:
    if storage.is_remote(path):
        raise DashboardError(f"{what} is read from a local folder (`{command}` writes only there); copy it down "
                             "first (aws s3 sync URL DIR)", file=path)


@dataclass
class RunInput:
    """A curate run folder (``curate run --output OUT``)."""

    path: str
    manifest: dict
    stages: list[StageConfig]
    complete: bool
    tasks_finished: int
    failed: dict = field(default_factory=dict)

    @property
    def manifest_path(self) -> str:
        return storage.join(self.path, MANIFEST)

    def stage(self, name: str) -> StageConfig | None:
        return next((s for s in self.stages if s.name == name), None)


def open_run(path: str, *, allow_empty: bool = False) -> RunInput:
    """Check that ``path`` is a curate run with at least one finished task (unless ``allow_empty``).

    Whether it is a run at all is ``curate.stats.read_manifest``'s check, the one every command that
    reads a run makes."""
    path = storage.normalize(path)
    manifest = read_manifest(path)
    manifest_path = storage.join(path, MANIFEST)
    stages = run_stages(manifest, manifest_path)
    stats_dir = storage.join(path, "stats")
    finished = len(storage.glob(storage.join(stats_dir, "*.parquet")))
    if not allow_empty:
        if not storage.isdir(stats_dir):
            raise DashboardError("no stats/ folder: the run has not finished any task yet", file=stats_dir)
        if not finished:
            raise DashboardError("no finished task yet (stats/ holds no .parquet file)", file=stats_dir)
    failed = manifest.get("failed") if isinstance(manifest.get("failed"), dict) else {}
    return RunInput(path, manifest, stages, bool(manifest.get("complete")) and not failed, finished, failed)


@dataclass
class TokensInput:
    """A token folder (``curate tokenize --output TOKENS``)."""

    path: str
    meta: dict

    @property
    def stats_glob(self) -> str:
        return storage.join(self.path, "stats", "*.parquet")


def open_tokens(path: str) -> TokensInput:
    path = storage.normalize(path)
    if not storage.is_remote(path) and not os.path.isdir(path):
        raise DashboardError("not a directory", file=path)
    if not storage.glob(storage.join(path, "stats", "*.parquet")):
        raise DashboardError("not a token folder, or nothing tokenized yet (no stats/*.parquet); "
                             "give the folder `curate tokenize --output` wrote", file=path)
    meta_path = storage.join(path, "meta.json")
    meta = _read_json(meta_path) if storage.exists(meta_path) else {}
    return TokensInput(path, meta if isinstance(meta, dict) else {})


#: Columns of MIX/mixture.parquet the report reads (INTERFACES.md).
MIXTURE_COLUMNS = ("component", "documents", "tokens_available", "weight_asked", "weight_realized",
                   "tokens_drawn", "epochs", "val_tokens")


@dataclass
class MixtureInput:
    """A mixture folder (``curate mix``): mixture.json and one row per component in mixture.parquet."""

    path: str
    meta: dict

    @property
    def table_path(self) -> str:
        return os.path.join(self.path, "mixture.parquet")


def open_mixture(path: str) -> MixtureInput:
    import duckdb

    _local_only(path, "a mixture folder", "curate mix")
    path = os.path.abspath(path)
    meta_path = os.path.join(path, "mixture.json")
    if not os.path.isfile(meta_path):
        raise DashboardError("not a mixture folder (no mixture.json); give the folder `curate mix` wrote",
                             file=path)
    meta = _read_json(meta_path)
    if not isinstance(meta, dict):
        raise DashboardError("expected a JSON object", file=meta_path)
    table = os.path.join(path, "mixture.parquet")
    if not os.path.isfile(table):
        raise DashboardError("missing: the mixture has no per-component table", file=table)
    try:
        columns = {row[0] for row in duckdb.connect().execute(
            "DESCRIBE SELECT * FROM read_parquet(?)", [table]).fetchall()}
    except duckdb.Error as err:
        raise DashboardError(f"not a readable Parquet file ({str(err).splitlines()[0]})", file=table) from None
    missing = [c for c in MIXTURE_COLUMNS if c not in columns]
    if missing:
        raise DashboardError("missing column (the mixture table needs " + ", ".join(MIXTURE_COLUMNS) + ")",
                             file=table, key=missing[0])
    return MixtureInput(path, meta)


@dataclass
class TrainInput:
    """One training run (``curate train``): its config and the metrics logged so far."""

    name: str
    path: str
    config: dict
    train: list[dict]
    val: list[dict]
    done: bool


def open_training(paths: list[str]) -> list[TrainInput]:
    """Training runs from RUN folders and ablation folders (whose sub-folders are RUN folders).

    Names are the folder names (an ablation's ``NAME-seedK``), made unique when two runs share one.
    """
    runs: list[TrainInput] = []
    for given in paths:
        _local_only(given, "a training run", "curate train")
        path = os.path.abspath(given)
        if not os.path.isdir(path):
            raise DashboardError("not a directory", file=path)
        if _is_train_run(path):
            runs.append(_open_train_run(path))
            continue
        children = sorted(d for d in glob.glob(os.path.join(path, "*")) if os.path.isdir(d) and _is_train_run(d))
        if not children:
            raise DashboardError("not a training run (no metrics.jsonl or config.json) nor an ablation folder "
                                 "of training runs; give the folder `curate train` wrote", file=path)
        runs.extend(_open_train_run(child) for child in children)
    seen: dict[str, int] = {}
    for run in runs:
        if run.name in seen:
            seen[run.name] += 1
            run.name = f"{run.name} ({seen[run.name]})"
        else:
            seen[run.name] = 1
    return runs


def _is_train_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "metrics.jsonl")) or os.path.isfile(os.path.join(path, "config.json"))


def _open_train_run(path: str) -> TrainInput:
    config_path = os.path.join(path, "config.json")
    config = _read_json(config_path) if os.path.isfile(config_path) else {}
    train, val = read_metrics(os.path.join(path, "metrics.jsonl"))
    return TrainInput(os.path.basename(path), path, config if isinstance(config, dict) else {}, train, val,
                      os.path.isfile(os.path.join(path, "done.json")))


def read_metrics(path: str) -> tuple[list[dict], list[dict]]:
    """Train and validation records of a ``metrics.jsonl`` (one line per step; small: read in Python).

    A run that is still going may be caught halfway through writing its last line: a last line
    without its newline that does not parse is left for the next refresh. Any other bad line is an
    error naming the line.
    """
    train: list[dict] = []
    val: list[dict] = []
    if not os.path.isfile(path):
        return train, val
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the last piece, no newline after it: still being written
                continue
            raise DashboardError("not a JSON object", file=path, key=f"line {number}") from None
        if not isinstance(record, dict):
            raise DashboardError("not a JSON object", file=path, key=f"line {number}")
        kind = record.get("kind", "train")
        if kind == "train":
            train.append(record)
        elif kind == "val":
            val.append(record)
    return train, val
