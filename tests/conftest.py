"""Shared test fixtures: paths to the real data in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (CI has it); tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory) -> Path:
    """One real run of the demo pipeline, shared by every test that reads a run's output (read-only: copy it
    before changing it). ``curate run`` on the demo's generated input and config, as `curate demo` runs it,
    without the tokenizer steps that follow."""
    import subprocess
    import sys

    from curate.demo import demo_config_text
    from curate.demo_data import build_demo_inputs

    root = tmp_path_factory.mktemp("demo-output")
    build_demo_inputs(str(root / "raw"))
    (root / "pipeline.yaml").write_text(demo_config_text(), encoding="utf-8")
    cli = str(Path(sys.executable).parent / "curate")
    done = subprocess.run([cli, "run", "pipeline.yaml", "--output", "out", "--workers", "2", "--no-progress"],
                          cwd=root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "out"
