"""Config validation: every mistake names the file, the key and what was expected."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from curate.config import from_shortcut, load_config
from curate.params import ConfigError


def write(tmp_path, body: str):
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(body))
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    return str(path)


GOOD = """
inputs:
  - source: web
    format: jsonl
    paths: [in.jsonl]
stages:
  - length: {min_chars: 5}
"""


def test_a_good_config_loads_with_paths_relative_to_the_file(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.stages[0].name == "length" and config.stages[0].params == {"min_chars": 5}
    assert config.resolved_paths() == [[str(tmp_path / "in.jsonl")]]


@pytest.mark.parametrize("body, key, expected", [
    (GOOD.replace("min_chars: 5", "min_chars: five"), "stages[0].length.min_chars", "expected an integer"),
    (GOOD.replace("min_chars: 5", "min_char: 5"), "stages[0].length.min_char", "unknown parameter"),
    (GOOD.replace("min_chars: 5", "min_chars: -1"), "stages[0].length.min_chars", "must be 0 or more"),
    (GOOD.replace("- length", "- lenght"), "stages[0]", "unknown stage 'lenght'"),
    (GOOD.replace("format: jsonl", "format: jsnol"), "inputs[0].format", "unknown format"),
    (GOOD.replace("    paths: [in.jsonl]\n", ""), "inputs[0].paths", "missing"),
    (GOOD.replace("source: web", "source: [a, b]"), "inputs[0].source", "expected a string"),
    (GOOD + "outputs: x\n", "outputs", "unknown top-level key"),
    (GOOD + "run: {task_mb: 0}\n", "run.task_mb", "must be positive"),
    (GOOD + "  - length\n", "stages", "listed twice"),
    (GOOD.replace("- length: {min_chars: 5}", "- length: {min_chars: 5, skip_sources: [books]}"),
     "stages[0].length.skip_sources", "no input has source 'books'"),
    ("inputs: [\n", "line", "not valid YAML"),
])
def test_mistakes_name_file_and_key(tmp_path, body, key, expected):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(path), message
    assert key in message and expected in message, message


def test_missing_input_file_is_a_config_error(tmp_path):
    from curate.runner import plan_tasks

    config = load_config(write(tmp_path, GOOD.replace("in.jsonl", "nope-*.jsonl")))
    with pytest.raises(ConfigError, match=r"inputs\[0\]\.paths.*no input matches"):
        plan_tasks(config)


def test_shortcut_applies_overrides_and_routes_code(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    config = from_shortcut([str(tmp_path / "in.jsonl")], "jsonl", "notes", ["length"], ["length.max_chars=100"])
    assert [(s.name, s.params) for s in config.stages] == [("length", {"max_chars": 100})]
    with pytest.raises(ConfigError, match=r"--set.*not in this pipeline"):
        from_shortcut([str(tmp_path / "in.jsonl")], "jsonl", None, ["length"], ["langid.min_score=0.5"])
    with pytest.raises(ConfigError, match="expected STAGE.PARAM=VALUE"):
        from_shortcut([str(tmp_path / "in.jsonl")], "jsonl", None, ["length"], ["length"])


def test_cli_exit_code_2_and_message_for_a_bad_config(tmp_path):
    path = write(tmp_path, GOOD.replace("min_chars: 5", "min_chars: true"))
    done = subprocess.run([sys.executable, "-m", "curate.cli", "run", path, "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"{path}: stages[0].length.min_chars: expected an integer, got True" in " ".join(done.stderr.split())
    usage = subprocess.run([sys.executable, "-m", "curate.cli", "run", "-o", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "config file" in usage.stderr


def test_shipped_example_configs_are_valid(tmp_path):
    """Every config in curate/configs validates (inputs need not exist to validate)."""
    from importlib import resources

    configs = [p for p in resources.files("curate").joinpath("configs").iterdir() if p.name.endswith(".yaml")]
    assert len(configs) >= 3
    for config in configs:
        target = tmp_path / config.name
        target.write_text(config.read_text())
        loaded = load_config(str(target))
        assert loaded.stages and loaded.inputs
