"""One schema per output folder, decided when the run is planned.

Each source runs its own reader and its own stages (``sources:`` / ``skip_sources:``),
so left alone the shards of ``docs/`` would carry different columns: books 48,
code 25, web 65 in the demo. DuckDB unions them by name. Tools that take one
file's schema do not: ``datasets.load_dataset("parquet", ...)`` stops with a
``CastError``, and ``pyarrow.dataset`` silently drops the columns the first file
lacks.

So every reader and stage declares what it produces: ``Reader.output_fields``
(its ``schema`` by default) and ``Stage.output_fields`` (its ``outputs`` and
``drops`` by default). Before any task runs, the runner follows each source
through its stages and takes the union:

- ``docs/``: the columns a document of some source has after its last stage;
- ``rejects/``: the columns a document has when some stage drops it, then
  ``reject_stage``, ``reject_reason`` and ``error_traceback``.

The order is the core columns and ``given_id``, then the readers' columns (in
input order), then the stages' (in pipeline order). Every shard of a folder is written with exactly
that schema, null where a stage did not apply to a source. The schema is stored
in ``manifest.json``, so a resumed run writes the same one. A reader or stage
that hands over a column it did not declare, or a declared column of another
type, stops its task with an error that names it. Nothing is cast silently:
the one cast is from an all-null column, which holds no value to change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from curate.params import ConfigError
from curate.schema import CORE_FIELDS, REJECT_FIELDS

#: What ``curate.execute`` adds to the reject of an input that a reader could not read at all.
READ_ERROR_FIELDS = [pa.field("error_traceback", pa.string())]
#: What the runner adds to every document: the id an input gave a document whose id it had to
#: rename because another document carried it too (curate.ids); null for every other document.
RUNNER_FIELDS = [pa.field("given_id", pa.string())]
#: Schema metadata key: JSON ``{"origins": {column: "reader:warc" | "stage:langid" | "core" ...}}``.
METADATA_KEY = b"curate"


class OutputSchemaError(TypeError):
    """Data that does not match the run's planned schema: a reader or stage broke its declaration."""


@dataclass
class OutputSchemas:
    docs: pa.Schema
    rejects: pa.Schema

    def describe(self) -> dict:
        """For ``manifest.json``: column names and types, in order."""
        return {name: [[f.name, str(f.type)] for f in schema]
                for name, schema in (("docs", self.docs), ("rejects", self.rejects))}


def origins(schema: pa.Schema) -> dict[str, str]:
    """Which reader or stage declared each column of a planned schema (from its metadata)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw)["origins"] if raw else {}


def _as_stored(tp: pa.DataType) -> pa.DataType:
    """A type as Parquet stores it: list items are called ``element`` (Arrow says ``item``; the types are equal)."""
    if pa.types.is_list(tp):
        return pa.list_(pa.field("element", _as_stored(tp.value_type)))
    if pa.types.is_large_list(tp):
        return pa.large_list(pa.field("element", _as_stored(tp.value_type)))
    if pa.types.is_struct(tp):
        return pa.struct([pa.field(f.name, _as_stored(f.type)) for f in tp])
    return tp


def _applies(source: str, sources: list[str] | None, skip: list[str]) -> bool:
    return source not in skip and (sources is None or source in sources)


def plan_output_schemas(config, readers: dict, paths: dict[str, list[str]], segments) -> OutputSchemas:
    """The docs and rejects schemas of a run, from the readers' and stages' declarations.

    ``readers`` maps each source to its reader and ``paths`` each source to its input
    files. ``segments`` are the runner's. Two declarations of one column with different
    types are a ``ConfigError`` naming both.
    """
    catalog: dict[str, pa.Field] = {}
    origin: dict[str, str] = {}

    def declare(field: pa.Field, who: str, key: str) -> None:
        known = catalog.get(field.name)
        if known is None:
            catalog[field.name] = pa.field(field.name, _as_stored(field.type))  # nullable: a stage may not apply
            origin[field.name] = who
        elif known.type != field.type:
            raise ConfigError(f"{who} produces column {field.name!r} as {field.type}, but {origin[field.name]} "
                              f"produces it as {known.type}: one column, one type", file=config.file, key=key)

    for field in CORE_FIELDS:
        declare(field, "core", "inputs")
    for field in RUNNER_FIELDS:
        declare(field, "runner", "inputs")
    reader_fields: dict[str, list[pa.Field]] = {}
    for i, spec in enumerate(config.inputs):
        try:
            reader_fields[spec.source] = readers[spec.source].output_fields(paths.get(spec.source, []))
        except ValueError as err:  # inputs that disagree on a column's type
            raise ConfigError(str(err), file=config.file, key=f"inputs[{i}].options") from None
        for field in reader_fields[spec.source]:
            declare(field, f"reader:{spec.format}", f"inputs[{i}]")
    stage_keys = {}
    for i, spec in enumerate(config.stages):
        stage_keys[spec.name] = f"stages[{i}]"
    chains = []  # per source: the stages it runs, in order
    for spec in config.inputs:
        chain = []
        for segment in segments:
            if segment.global_stage is not None:
                chain.append(segment.global_stage)
            chain += [stage for stage, sources, skip in segment.stages if _applies(spec.source, sources, skip)]
        chains.append(chain)
    for segment in segments:
        stages = [s for s, _, _ in segment.stages]
        if segment.global_stage is not None:
            stages.insert(0, segment.global_stage)
        for stage in stages:
            for field in stage.output_fields():
                declare(field, f"stage:{stage.name}", stage_keys.get(stage.name, "stages"))

    in_docs: set[str] = set()
    in_rejects: set[str] = set()
    for spec, chain in zip(config.inputs, chains):
        columns = [f.name for f in CORE_FIELDS + RUNNER_FIELDS]
        columns += [f.name for f in reader_fields[spec.source] if f.name not in columns]
        in_rejects.update(columns)  # rejected by the reader
        for stage in chain:
            dropped = set(stage.drops)
            columns = [c for c in columns if c not in dropped]
            columns += [f.name for f in stage.output_fields() if f.name not in columns]
            in_rejects.update(columns)  # rejected by this stage
        in_docs.update(columns)
    docs = [catalog[name] for name in catalog if name in in_docs]
    rejects = [catalog[name] for name in catalog if name in in_rejects]
    for field in REJECT_FIELDS + READ_ERROR_FIELDS:
        if field.name in catalog:
            raise ConfigError(f"{origin[field.name]} declares {field.name!r}, a column the runner adds to rejects",
                              file=config.file, key="stages")
        rejects.append(pa.field(field.name, field.type))
        origin[field.name] = "runner"
    return OutputSchemas(_with_origins(docs, origin), _with_origins(rejects, origin))


def _with_origins(fields: list[pa.Field], origin: dict[str, str]) -> pa.Schema:
    meta = {"origins": {f.name: origin[f.name] for f in fields}}
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


def conform_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, order and types: missing columns become nulls.

    A column of another type, or one the schema lacks that holds a value, raises
    ``OutputSchemaError`` naming the reader or stage that declared it. A column
    that is null in every row carries no value, so it is cast (if declared) or
    left out (if not).
    """
    known = set(schema.names)
    declared_by = origins(schema)
    for name in table.column_names:
        if name not in known and table[name].null_count != table.num_rows:
            raise OutputSchemaError(f"column {name!r} ({table[name].type}) is not in the run's planned schema: the "
                                    "reader or stage that adds it must declare it (Reader.output_fields / "
                                    "Stage.outputs)")
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table[field.name]
        if column.type != field.type:
            if column.null_count != len(column):
                raise OutputSchemaError(f"column {field.name!r} is {column.type}, but "
                                        f"{declared_by.get(field.name, 'its declaration')} declares {field.type}")
            column = pa.nulls(len(column), field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def check_stage_output(stage, before: pa.Schema, after: pa.Schema) -> None:
    """A stage's result holds only the columns it declares, with the declared types.

    Called on every batch a stage returns, so a stage that breaks its declaration
    fails the task at once, naming the stage and the column.
    """
    declared = {f.name: f.type for f in stage.output_fields()}
    for field in after:
        if pa.types.is_null(field.type):
            continue  # no value: it becomes the planned type, or is left out
        if field.name in declared:
            if field.type != declared[field.name]:
                raise OutputSchemaError(f"stage {stage.name} returned column {field.name!r} as {field.type}, but "
                                        f"declares {declared[field.name]}")
        elif field.name not in before.names:
            raise OutputSchemaError(f"stage {stage.name} added column {field.name!r} ({field.type}) that it does "
                                    "not declare in its outputs")
        elif before.field(field.name).type != field.type and not pa.types.is_null(before.field(field.name).type):
            raise OutputSchemaError(f"stage {stage.name} changed column {field.name!r} from "
                                    f"{before.field(field.name).type} to {field.type} without declaring it")
