"""Packaging: one `curate` namespace, in an editable install and in a wheel; no bare top-level folders."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUBPACKAGES = ["stages", "tokenizers", "mixtures", "trainer", "dashboards", "tests", "benchmarks"]


def test_folders_import_as_curate_subpackages_and_never_bare(tmp_path):
    code = (
        "import importlib, importlib.util, curate\n"
        f"for name in {SUBPACKAGES!r}:\n"
        "    module = importlib.import_module('curate.' + name)\n"
        "    assert module.__file__.endswith(name + '/__init__.py'), module.__file__\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    assert spec is None or 'site-packages' in (spec.origin or ''), (name, spec)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_wheel_maps_every_folder_under_curate(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    wheel, = tmp_path.glob("curate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("curate-")}
    assert tops == {"curate"}, tops
    for name in SUBPACKAGES:
        assert f"curate/{name}/__init__.py" in names
    assert "curate/stages/length.py" in names and "curate/readers/jsonl.py" in names
