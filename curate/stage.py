"""Stage base classes and the stage registry.

A per-document stage is a few lines of judgement: it receives an Arrow table of
documents, adds its signal columns for every row, and names a reject reason for
the rows it drops. Everything else (batching, timing, counting, routing rejects,
turning an exception into a quarantined reject) lives once, in the runner.

    @register
    class ShortDocs(Stage):
        name = "short_docs"
        outputs = (pa.field("char_count", pa.int32()),)  # the columns it adds, with their types

        @dataclass
        class Params:
            min_chars: int = 100

        def process(self, table):
            chars = pc.utf8_length(table["text"])
            table = table.append_column("char_count", chars)
            reasons = pc.if_else(pc.less(chars, self.params.min_chars), "too-short", None)
            return StageResult(table, reasons)

Every column a stage adds is declared in ``outputs``: the runner plans the run's one output
schema from the declarations (curate.output_schema), and a stage that returns an undeclared
column, or a declared one of another type, fails its task naming the stage and the column.

A global stage (dedup) sees all documents of a run: it is an explicit job with
its own steps (``run``) followed by a per-document ``apply``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from curate.params import ConfigError, build_params


@dataclass
class StageResult:
    """A stage's output: the input rows with signal columns added, and why rows are dropped.

    ``reasons`` has one entry per row: null keeps the row, a string drops it with
    that reason. ``None`` (the default) keeps every row.
    """

    table: pa.Table
    reasons: pa.Array | pa.ChunkedArray | list | None = None


class Stage:
    """A per-document stage: a pyarrow Table in, a ``StageResult`` out."""

    name: ClassVar[str]
    #: A dataclass of parameters with typed, documented defaults.
    Params: ClassVar[type] = dataclass(type("Params", (), {}))
    #: Columns this stage needs (checked before the run starts).
    requires: ClassVar[tuple[str, ...]] = ("text",)
    #: Columns this stage adds (or rewrites with a new type), with their Arrow types. The run's one
    #: output schema is planned from them (curate.output_schema); an undeclared column fails the task.
    outputs: ClassVar[tuple[pa.Field, ...]] = ()
    #: Columns this stage removes (extract drops the reader's ``html``).
    drops: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()
        self._ready = False

    @classmethod
    def from_config(cls, raw: dict | None, *, where: str = "", file: str | None = None) -> "Stage":
        return cls(build_params(cls.Params, raw, where=where or cls.name, file=file))

    def setup(self) -> None:
        """Load models and other heavy state; called once per worker before the first batch."""

    def ensure_setup(self) -> None:
        if not self._ready:
            self.setup()
            self._ready = True

    def process(self, table: pa.Table) -> StageResult:
        raise NotImplementedError

    def output_fields(self) -> list[pa.Field]:
        """The columns this stage adds with its parameters: ``outputs``, unless a stage overrides it."""
        return list(self.outputs)

    def describe(self) -> dict:
        return {"name": self.name, "params": dataclasses.asdict(self.params)}


class GlobalStage(Stage):
    """A stage that needs every document of the run before it can decide (dedup).

    The runner first runs every per-document stage before it and lands their
    output as intermediate shards; then calls ``run`` once with those shards (it
    may start its own Ray tasks and write what it needs under ``workdir``); then
    calls ``process`` on each shard's batches, in a fresh per-document pass, to
    apply the decisions.
    """

    def run(self, shards: list[str], workdir: str, *, workers: int) -> dict:
        """Compute the decisions over all ``shards``; returns a small summary for the stats."""
        raise NotImplementedError

    def load_decisions(self, workdir: str) -> None:
        """Load what ``run`` wrote, in a worker, before ``process`` is called."""


#: Stage name -> "module:Class"; modules are imported lazily so that a
#: pipeline only pays for the stages it uses.
STAGES: dict[str, str] = {
    "extract": "curate.stages.extract:Extract",
    "length": "curate.stages.length:Length",
    "langid": "curate.stages.langid:LangId",
    "gopher_quality": "curate.stages.gopher:GopherQuality",
    "gopher_repetition": "curate.stages.gopher:GopherRepetition",
    "c4": "curate.stages.c4:C4Quality",
    "fineweb": "curate.stages.fineweb:FineWebQuality",
    "code_quality": "curate.stages.code_quality:CodeQuality",
    "quality": "curate.stages.quality:QualityClassifier",
    "detox": "curate.stages.detox:Detox",
    "pii": "curate.stages.pii:Pii",
    "dedup": "curate.stages.dedup:MinHashDedup",
    "exact_dedup": "curate.stages.dedup:ExactDedup",
}


def register(cls: type[Stage]) -> type[Stage]:
    """Register a stage class under its ``name`` (for stages defined outside curate.stages)."""
    STAGES[cls.name] = f"{cls.__module__}:{cls.__qualname__}"
    return cls


def stage_class(name: str, *, key: str = "stages", file: str | None = None) -> type[Stage]:
    target = STAGES.get(name) or (name if ":" in name else None)  # "package.module:Class" for your own stages
    if target is None:
        raise ConfigError(f"unknown stage {name!r} (known: {', '.join(STAGES)})", file=file, key=key)
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load stage {name!r} from {target}: {err}", file=file, key=key) from None
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise ConfigError(f"{target} is not a curate Stage", file=file, key=key)
    return cls
