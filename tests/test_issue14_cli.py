"""Parameters that mean what they say, and one clear line instead of a traceback (issue 14). No Ray here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import from_dict, from_shortcut
from curate.execute import TaskPlan, run_task
from curate.params import ConfigError
from curate.readers import Task
from curate.readers.jsonl import JsonlReader
from curate.stage import Stage, StageResult

REPO = Path(__file__).resolve().parent.parent
CURATE = [sys.executable, "-m", "curate.cli"]


def invoke(*args: str, cwd: Path):
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(previous)


# ---------------------------------------------------------------- 6. values that can never match


def test_a_comma_separated_list_is_a_list_where_a_list_is_expected(tmp_path, monkeypatch):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    monkeypatch.chdir(tmp_path)
    config = from_shortcut(["in.jsonl"], "jsonl", None, ["langid"], ["langid.languages=en,zh"])
    stage = config.stages[0].build()
    assert stage.params.languages == ["en", "zh"]
    config = from_shortcut(["in.jsonl"], "jsonl", None, ["langid"], ["langid.languages=[en, zh-Hant]"])
    assert config.stages[0].build().params.languages == ["en", "zh"]


@pytest.mark.parametrize("value, expected", [
    ("[en,zh", r"--set langid\.languages.*not a valid list"),
    ("en,xx", r"langid\.languages.*'xx'.*lid\.176"),
    ("klingon", r"langid\.languages.*'klingon'"),
])
def test_a_language_that_can_never_match_is_a_config_error(tmp_path, monkeypatch, value, expected):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=expected):
        from_shortcut(["in.jsonl"], "jsonl", None, ["langid"], [f"langid.languages={value}"])
    result = invoke("run", "-i", "in.jsonl", "-f", "jsonl", "--stages", "langid", "--set", f"langid.languages={value}",
                    "-o", "out", cwd=tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_in_a_config_file_a_language_list_written_as_one_string_is_refused(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    raw = {"inputs": [{"source": "w", "format": "jsonl", "paths": ["in.jsonl"]}],
           "stages": [{"langid": {"languages": "en,zh", "min_scores": {"zh": 0.5}}}]}
    with pytest.raises(ConfigError, match=r"stages\[0\]\.langid\.languages.*'en,zh'.*\[en, zh\]"):
        from_dict(raw, file="p.yaml", base_dir=str(tmp_path))
    raw["stages"] = [{"langid": {"languages": ["en"], "min_scores": {"english": 0.5}}}]
    with pytest.raises(ConfigError, match=r"langid\.min_scores.*'english'"):
        from_dict(raw, file="p.yaml", base_dir=str(tmp_path))


def test_extract_language_precheck_refuses_a_language_that_can_never_match(tmp_path):
    (tmp_path / "in.warc").write_bytes(b"")
    raw = {"inputs": [{"source": "cc", "format": "warc", "paths": ["in.warc"]}],
           "stages": [{"extract": {"only_languages": ["en", "english"]}}]}
    with pytest.raises(ConfigError, match=r"stages\[0\]\.extract\.only_languages.*'english'.*lid\.176"):
        from_dict(raw, file="p.yaml", base_dir=str(tmp_path))
    raw["stages"] = [{"extract": {"only_languages": ["en", "zh-Hans"]}}]
    assert from_dict(raw, file="p.yaml", base_dir=str(tmp_path)).stages[0].build().params.only_languages == ["en", "zh"]


def test_run_settings_from_the_command_line(tmp_path, monkeypatch):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    monkeypatch.chdir(tmp_path)
    config = from_shortcut(["in.jsonl"], "jsonl", None, ["length"], ["run.task_mb=8", "run.max_retries=0"])
    assert config.run.task_mb == 8.0 and config.run.max_retries == 0
    with pytest.raises(ConfigError, match=r"run\.bogus.*known: batch_rows"):
        from_shortcut(["in.jsonl"], "jsonl", None, ["length"], ["run.bogus=1"])


# ---------------------------------------------------------------- tracebacks instead of messages


def _one_line_error(result, *, code: int, says: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert says in result.output, result.output
    said = [line for line in result.output.splitlines()
            if line.strip() and not line.startswith(("Usage:", "Try "))]  # click's usage header around its Error
    assert len(said) <= 2, result.output


def test_path_mistakes_are_one_line_errors(tmp_path):
    (tmp_path / "not-curate").mkdir()
    (tmp_path / "a-file").write_text("x\n")
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    _one_line_error(invoke("stats", "not-curate", cwd=tmp_path), code=2, says="not a curate output")
    _one_line_error(invoke("sql", "not-curate", "SELECT 1", cwd=tmp_path), code=2, says="not a curate output")
    _one_line_error(invoke("run", "-i", "in.jsonl", "-f", "jsonl", "-o", "a-file/out", cwd=tmp_path), code=2,
                    says="a-file")
    _one_line_error(invoke("run", "-i", "in.jsonl", "-f", "jsonl", "-o", "not-curate/../a-file", cwd=tmp_path),
                    code=2, says="a-file")
    (tmp_path / "pipeline.yaml").mkdir()
    _one_line_error(invoke("run", "pipeline.yaml", "-o", "out", cwd=tmp_path), code=2, says="pipeline.yaml")
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_is_a_one_line_error(tmp_path):
    """As root, permission bits are enforced by dropping the capabilities that bypass them (setpriv)."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv")
        prefix = [shutil.which("setpriv"), "--bounding-set=-dac_override,-dac_read_search"]
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    (tmp_path / "secret.yaml").write_text("inputs: []\n")
    os.chmod(tmp_path / "secret.yaml", 0)
    try:
        for args, says in ((["run", "-i", "in.jsonl", "-f", "jsonl", "-o", "ro/out", "--no-progress"], "ro/out"),
                           (["run", "-i", "in.jsonl", "-f", "jsonl", "-o", "ro", "--no-progress"], "ro"),
                           (["run", "secret.yaml", "-o", "out2"], "secret.yaml")):
            done = subprocess.run([*prefix, *CURATE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr and says in done.stderr and "ermission denied" in done.stderr, \
                done.stderr
    finally:
        os.chmod(tmp_path / "ro", 0o755)
        os.chmod(tmp_path / "secret.yaml", 0o644)
    assert not (tmp_path / "ro" / "out").exists() and not (tmp_path / "out2").exists()


# ---------------------------------------------------------------- smaller things


def test_stages_lists_each_stage_with_its_own_description():
    from curate.stage import STAGES, stage_class

    result = CliRunner().invoke(main, ["stages"])
    assert result.exit_code == 0
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^  (\w+)  (.*)$", result.output, re.M)}
    for name in STAGES:
        cls = stage_class(name)
        own = (cls.__dict__.get("__doc__") or "").strip()
        if own:
            assert lines[name] == own.splitlines()[0], name
    # two stages never share one description (gopher_repetition once showed gopher_quality's)
    shown = [lines[name] for name in STAGES]
    assert len(set(shown)) == len(shown), shown


class _Watch(Stage):
    """Records how many progress reports had arrived when it was asked to process a batch."""

    name = "watch"

    def __init__(self, calls: list):
        super().__init__(None)
        self.calls, self.seen = calls, []

    def process(self, table: pa.Table) -> StageResult:
        self.seen.append(list(self.calls))
        return StageResult(table)


def test_a_task_reports_progress_before_its_first_batch_is_done(tmp_path):
    (tmp_path / "in.jsonl").write_text("".join(f'{{"text": "document {i}"}}\n' for i in range(50)))
    calls: list = []
    stage = _Watch(calls)
    plan = TaskPlan(segment=0, stages=[(stage, None, [])], docs_dir=str(tmp_path / "docs"),
                    rejects_dir=str(tmp_path / "rejects"), stats_dir=str(tmp_path / "stats"))
    os.makedirs(plan.stats_dir)
    run_task(Task("web", "jsonl", str(tmp_path / "in.jsonl")), plan, JsonlReader("web"),
             progress=lambda *report: calls.append(report))
    first = stage.seen[0]
    assert first and first[-1][2] == 50 and first[-1][3] == "watch", first  # records read, stage running


def test_the_build_prints_no_setuptools_warnings(tmp_path):
    done = subprocess.run([sys.executable, "-c", f"import setuptools.build_meta as b; b.build_wheel({str(tmp_path)!r})"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Deprecat" not in done.stderr and "absent from the `packages`" not in done.stderr, done.stderr[-3000:]
    import zipfile

    wheel, = tmp_path.glob("curate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for data in ("curate/configs/demo.yaml", "curate/data/demo/web_en.txt", "curate/data/demo/books/shancheng_biji.txt",
                 "curate/stages/data/wordlists/en.txt"):
        assert data in names, data
