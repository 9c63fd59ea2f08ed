"""One schema per output folder: every shard of docs/ (and of rejects/) has the same columns, order and types,
so the tools users reach for read a run's output whole: HF datasets, polars, pyarrow.dataset, DuckDB without
union_by_name."""

from __future__ import annotations

import glob
import json
import os

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import load_config
from curate.execute import TaskPlan, run_task
from curate.output_schema import OutputSchemaError, check_stage_output, conform_to
from curate.readers import Task
from curate.readers.jsonl import JsonlReader
from curate.runner import OutputConflict, Runner
from curate.stage import STAGES, GlobalStage, Stage, StageResult, stage_class

FOLDERS = ("docs", "rejects")


def _files(output, folder) -> list[str]:
    return sorted(glob.glob(os.path.join(str(output), folder, "*.parquet")))


def _truth(output, folder) -> pa.Table:
    """Every file read on its own by pyarrow (whose schema it keeps), concatenated, sorted by id."""
    tables = [pq.read_table(path) for path in _files(output, folder)]
    return pa.concat_tables(tables).sort_by("id")


def _rows(table: pa.Table) -> list[dict]:
    return table.sort_by("id").to_pylist()


def test_every_shard_of_a_folder_has_the_planned_schema(demo_output):
    manifest = json.loads((demo_output / "manifest.json").read_text())
    for folder in FOLDERS:
        paths = _files(demo_output, folder)
        assert len(paths) >= 5, folder  # books, code and web shards, rejects of several stages
        schemas = [pq.read_schema(p) for p in paths]
        assert all(s.equals(schemas[0]) for s in schemas), folder
        assert [[f.name, str(f.type)] for f in schemas[0]] == manifest["output_schema"][folder]
    docs = pq.read_schema(_files(demo_output, "docs")[0])
    assert "html" not in docs.names  # every source ran extract, which drops it
    assert {"lang", "language", "repo", "chunk_index", "fetch_time", "c4_lines", "pii_email"} <= set(docs.names)
    rejects = pq.read_schema(_files(demo_output, "rejects")[0])
    assert rejects.names[-3:] == ["reject_stage", "reject_reason", "error_traceback"]
    # null where a stage did not apply to a source: code skips language ID, books skip C4
    con = duckdb.connect()
    pattern = os.path.join(str(demo_output), "docs", "*.parquet")
    assert con.execute(f"SELECT count(*) FROM read_parquet('{pattern}') WHERE source = 'code' "
                       "AND lang IS NOT NULL").fetchone()[0] == 0
    assert con.execute(f"SELECT count(*) FROM read_parquet('{pattern}') WHERE source = 'books' "
                       "AND c4_lines IS NOT NULL").fetchone()[0] == 0
    assert con.execute(f"SELECT count(*) FROM read_parquet('{pattern}') WHERE source = 'web' "
                       "AND c4_lines IS NULL").fetchone()[0] == 0


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_ecosystem_reads_every_row_and_column(demo_output, folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    polars = pytest.importorskip("polars")
    truth = _truth(demo_output, folder)
    pattern = os.path.join(str(demo_output), folder, "*.parquet")
    assert truth.num_rows > 10
    loaded = {
        "datasets": datasets.load_dataset("parquet", data_files=pattern, split="train",
                                          cache_dir=str(tmp_path / "hf")).data.table,
        "polars": polars.read_parquet(pattern).to_arrow(),
        "pyarrow.dataset": pads.dataset(os.path.join(str(demo_output), folder), format="parquet").to_table(),
        "pyarrow.parquet.read_table": pq.read_table(os.path.join(str(demo_output), folder)),
        "duckdb": duckdb.connect().sql(f"SELECT * FROM read_parquet('{pattern}')").to_arrow_table(),
    }
    expected = _rows(truth)
    for tool, table in loaded.items():
        assert table.column_names == truth.column_names, tool
        assert table.num_rows == truth.num_rows, tool
        assert _rows(table) == expected, tool


def test_stages_return_what_they_declare(shared_data):
    """Every per-document stage, on real English, Chinese and code text: declared columns, declared types."""
    texts = [(shared_data / "books" / "gutenberg").glob("*.txt").__next__().read_text("utf-8", "replace")[:20000],
             "\n".join(json.loads(line)["text"] for line in
                       open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8")
                       .readlines()[:20]),
             open(os.path.join(os.path.dirname(pq.__file__), "__init__.py"), encoding="utf-8").read()]
    table = pa.table({"id": ["en", "zh", "py"], "source": ["books", "web", "code"], "text": texts,
                      "url": ["http://a.example/x", None, None], "path": [None, None, "pq/__init__.py"]})
    checked = []
    for name in STAGES:
        cls = stage_class(name)
        if issubclass(cls, GlobalStage):
            continue  # needs the whole run's decisions: covered by the demo run
        if name == "quality":
            continue  # needs a trained model (tests/test_quality_model.py); declares quality_score float32
        stage = cls.from_config({})
        stage.ensure_setup()
        result = stage.process(table)
        check_stage_output(stage, table.schema, result.table.schema)
        for field in stage.output_fields():
            assert result.table.schema.field(field.name).type == field.type, (name, field.name)
        checked.append(name)
    assert len(checked) >= 9


class _WrongType(Stage):
    name = "wrong_type"
    outputs = (pa.field("score", pa.float32()),)

    def process(self, table):
        return StageResult(table.append_column("score", pa.array([0.5] * table.num_rows, pa.float64())))


class _Undeclared(Stage):
    name = "undeclared"

    def process(self, table):
        return StageResult(table.append_column("surprise", pa.array([1] * table.num_rows, pa.int64())))


class _Declared(Stage):
    name = "declared"
    outputs = (pa.field("score", pa.float32()),)

    def process(self, table):
        return StageResult(table.append_column("score", pa.array([0.5] * table.num_rows, pa.float32())))


@pytest.mark.parametrize("stage,message", [(_WrongType(), "returned column 'score' as double, but declares float"),
                                           (_Undeclared(), "added column 'surprise' (int64) that it does not")])
def test_a_stage_that_breaks_its_declaration_fails_its_task(tmp_path, stage, message):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(20)))
    plan = TaskPlan(segment=0, stages=[(stage, None, [])], docs_dir=str(tmp_path / "docs"),
                    rejects_dir=str(tmp_path / "rejects"), stats_dir=str(tmp_path / "stats"))
    os.makedirs(plan.stats_dir)
    reader = JsonlReader("s")
    with pytest.raises(OutputSchemaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_task(Task("s", "jsonl", str(tmp_path / "in.jsonl")), plan, reader)
    assert not glob.glob(str(tmp_path / "docs" / "*.parquet"))  # nothing committed, no stats: redone on rerun
    assert not os.listdir(plan.stats_dir)


def test_writer_conforms_and_refuses(tmp_path):
    schema = pa.schema([("id", pa.string()), ("score", pa.float32()), ("tags", pa.list_(pa.string()))])
    table = pa.table({"score": pa.array([None, None], pa.null()), "id": ["a", "b"]})
    out = conform_to(table, schema)
    assert out.schema.equals(schema) and out["tags"].null_count == 2
    with pytest.raises(OutputSchemaError, match="'score' is double"):
        conform_to(pa.table({"id": ["a"], "score": [0.5]}), schema)
    with pytest.raises(OutputSchemaError, match="'extra'"):
        conform_to(pa.table({"id": ["a"], "extra": [1]}), schema)
    # a column of nulls only carries no value: left out
    assert conform_to(pa.table({"id": ["a"], "extra": pa.nulls(1)}), schema).column_names == schema.names


def _small_pipeline(root) -> str:
    """Books, code and a JSONL source with different stages, no global stage: docs land per task."""
    from curate.demo_data import build_demo_inputs

    inputs = build_demo_inputs(str(root / "raw"))
    (root / "raw" / "notes.jsonl").write_text("".join(
        json.dumps({"id": f"n{i}", "text": f"note {i}" if i % 3 == 0 else
                    f"A short note number {i} about the weather and the sea.", "topic": ["sea", "sky"][i % 2]})
        + "\n" for i in range(30)))
    config = root / "pipeline.yaml"
    config.write_text(f"""
inputs:
  - {{source: books, format: txt, paths: [{inputs['books']}]}}
  - {{source: code, format: code, paths: [{inputs['code']}]}}
  - {{source: notes, format: jsonl, paths: [raw/notes.jsonl], options: {{keep_fields: [topic]}}}}
stages:
  - length: {{min_chars: 40}}
  - langid: {{languages: all, skip_sources: [code]}}
  - code_quality: {{sources: [code]}}
""")
    return str(config)


def test_a_resumed_run_writes_the_same_schema(tmp_path):
    config_path = _small_pipeline(tmp_path)
    output = tmp_path / "out"
    first = Runner(load_config(config_path), str(output), workers=2, show_progress=False).run()
    assert first.ok and first.rejects > 0
    manifest = json.loads((output / "manifest.json").read_text())
    planned = manifest["output_schema"]
    assert ["topic", "string"] in planned["docs"] and ["language", "string"] in planned["docs"]
    # an interrupted run: one task's shards and stats gone, the run not complete
    task = next(t for t in manifest["tasks"] if t.startswith("books-"))
    for path in glob.glob(str(output / "*" / f"{task}*.parquet")):
        os.remove(path)
    manifest["complete"] = False
    (output / "manifest.json").write_text(json.dumps(manifest))
    again = Runner(load_config(config_path), str(output), workers=2, show_progress=False).run()
    assert again.tasks_run == 1 and again.ok
    for folder in FOLDERS:
        schemas = [pq.read_schema(p) for p in _files(output, folder)]
        assert glob.glob(str(output / folder / f"{task}*.parquet")) or folder == "rejects"
        assert all(s.equals(schemas[0]) for s in schemas)
        assert [[f.name, str(f.type)] for f in schemas[0]] == planned[folder]
    # shards of another planned schema (another curate version) are never mixed in
    manifest = json.loads((output / "manifest.json").read_text())
    manifest["complete"] = False
    manifest["output_schema"]["docs"] = manifest["output_schema"]["docs"][:-1]
    (output / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputConflict, match="another output schema"):
        Runner(load_config(config_path), str(output), workers=2, show_progress=False).run()


def test_two_declarations_of_one_column_is_a_config_error(tmp_path):
    """A Parquet input's kept column and a stage's signal with one name and two types: exit code 2, both named."""
    pq.write_table(pa.table({"text": ["some text here"] * 3, "char_count": pa.array([1, 2, 3], pa.int32())}),
                   str(tmp_path / "in.parquet"))
    (tmp_path / "p.yaml").write_text("""
inputs:
  - {source: s, format: parquet, paths: [in.parquet], options: {keep_fields: [char_count]}}
stages: [length]
""")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "char_count" in result.output and "int32" in result.output and "int64" in result.output
    assert "Traceback" not in result.output
