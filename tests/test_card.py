"""`curate card`: the README.md that makes a run's output folder a Hugging Face dataset as it is."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from curate import stats
from curate.card import MARKER, _cell, _fenced, features
from curate.cli import main


@pytest.fixture()
def output(demo_output, tmp_path):
    """A private copy of the demo's output: the card is written into it."""
    copy = tmp_path / "out"
    shutil.copytree(demo_output, copy)
    return copy


def _header(readme: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", readme, re.S)
    assert match, "no YAML header"
    return yaml.safe_load(match.group(1))


def test_card_header_and_body(output):
    result = CliRunner().invoke(main, ["card", str(output), "--license", "cc-by-4.0", "--name", "demo corpus"])
    assert result.exit_code == 0, result.output
    readme = (output / "README.md").read_text(encoding="utf-8")
    header = _header(readme)
    assert header["license"] == "cc-by-4.0" and header["pretty_name"] == "demo corpus"
    assert {"en", "zh", "code"} <= set(header["language"])
    assert [c["config_name"] for c in header["configs"]] == ["default", "rejects", "stats"]
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "docs/*.parquet"}]
    con = stats.connect(str(output))
    info = {i["config_name"]: i for i in header["dataset_info"]}
    for config, view in (("default", "docs"), ("rejects", "rejects"), ("stats", "stats")):
        rows = con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
        assert info[config]["splits"][0]["num_examples"] == rows
        folder = "docs" if config == "default" else config
        assert info[config]["features"] == features(pq.read_schema(next((output / folder).glob("*.parquet"))))
    # the body: the funnel as `curate stats` computes it, every source, the versions, the licence to set
    for source, stage, din, dout, *_ in stats.funnel(con):
        assert re.search(rf"\| {source} \| {stage} \| {din:,} \| {dout:,} \|", readme), (source, stage)
    manifest = json.loads((output / "manifest.json").read_text())
    assert f"| curate | {manifest['versions']['curate']} |" in readme
    assert "## Licence" in readme and MARKER in readme
    for entry in manifest["inputs"]:
        assert f"| {entry['source']} | {entry['format']} |" in readme


def test_huggingface_reads_the_folder_by_its_card(output, tmp_path):
    """datasets.load_dataset(FOLDER) follows the card's configs and features; huggingface_hub parses the card."""
    datasets = pytest.importorskip("datasets")
    from huggingface_hub import DatasetCard

    assert CliRunner().invoke(main, ["card", str(output)]).exit_code == 0
    card = DatasetCard.load(output / "README.md")
    assert card.data.license == "unknown"
    con = stats.connect(str(output))
    for config, view in (("default", "docs"), ("rejects", "rejects"), ("stats", "stats")):
        loaded = datasets.load_dataset(str(output), config, split="train", cache_dir=str(tmp_path / "hf"))
        columns = [d[0] for d in con.execute(f"DESCRIBE {view}").fetchall()]
        assert loaded.column_names == columns
        assert loaded.num_rows == con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
    docs = datasets.load_dataset(str(output), split="train", cache_dir=str(tmp_path / "hf"))
    ids = sorted(r[0] for r in con.execute("SELECT id FROM docs").fetchall())
    assert sorted(docs["id"]) == ids


def test_text_from_the_data_is_never_markup():
    assert _cell("a|b <script>alert(1)</script> [x](http://e) *em* _u_ snake_case") == \
        r"a\|b &lt;script&gt;alert(1)&lt;/script&gt; \[x\](http://e) \*em\* \_u\_ snake_case"
    assert _cell("two\nlines") == "two lines"
    fenced = _fenced("path: a```b", "yaml")
    assert fenced[0] == "````yaml" and fenced[-1] == "````"


def test_bad_folders_and_an_existing_readme(output, tmp_path):
    runner = CliRunner()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    for folder in (plain, tmp_path / "absent"):
        result = runner.invoke(main, ["card", str(folder)])
        assert result.exit_code == 2 and str(folder) in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    # a README the user wrote is kept unless --overwrite; ours is refreshed on every run
    (output / "README.md").write_text("# my own notes\n")
    kept = runner.invoke(main, ["card", str(output)])
    assert kept.exit_code == 2 and "--overwrite" in kept.output
    assert (output / "README.md").read_text() == "# my own notes\n"
    assert runner.invoke(main, ["card", str(output), "--overwrite"]).exit_code == 0
    assert runner.invoke(main, ["card", str(output), "--license", "mit"]).exit_code == 0
    assert _header((output / "README.md").read_text(encoding="utf-8"))["license"] == "mit"
    # an unfinished run is not described
    manifest = json.loads((output / "manifest.json").read_text())
    manifest["complete"] = False
    (output / "manifest.json").write_text(json.dumps(manifest))
    unfinished = runner.invoke(main, ["card", str(output)])
    assert unfinished.exit_code == 2 and "not complete" in unfinished.output
