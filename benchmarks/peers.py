"""The peers' virtual environments for the comparison benchmarks, pinned so they build the same anywhere.

Why pins: datatrove's ``processing`` extra asks for ``trafilatura<1.12``; asking for it together
with curate's trafilatura (2.3.1, so both sides extract with the same library) let pip backtrack
to datatrove 0.2.0, which has none of the modules the scripts import. Here datatrove itself is
pinned, its ``io`` extra is installed, and the ``processing`` packages the scripts use are
named one by one with trafilatura at curate's version. A venv records what it was built from
(``.curate-peer-requirements``): a changed pin rebuilds it, an unchanged one is reused.

    from curate.benchmarks.peers import datatrove_requirements, ensure_venv
    python = ensure_venv(Path("/tmp/curate-bench-datatrove-venv"), datatrove_requirements())
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

#: datatrove 0.10.1 (its WarcReader, Trafilatura, LanguageFilter, Gopher/C4/FineWeb filters and
#: 4-step MinHash dedup, as the scripts import them) and what those modules need at run time.
DATATROVE_PINS = [
    "datatrove[io]==0.10.1",
    "fasttext-numpy2-wheel==0.9.2",
    "xxhash==3.8.2",
    "regex==2026.11.19",
    "tokenizers==0.23.3",
    "orjson==3.13.0",
    "nltk==3.10.4",
    "inscriptis==2.7.6",
    "tldextract==5.4.0",
    "ftfy==6.3.1",
    "pyahocorasick==2.3.1",
    "fasteners==0.20",
    "lxml_html_clean==0.4.6",
    "spacy==3.8.18",
    "requests",
    "aiohttp",
]
#: What must import for the venv to count as built.
DATATROVE_PROBE = ("import datatrove.pipeline.dedup, datatrove.pipeline.readers, datatrove.pipeline.extractors, "
                   "datatrove.pipeline.filters, datatrove.utils.lid, trafilatura, fasttext, spacy, xxhash")


def datatrove_requirements() -> list[str]:
    """DATATROVE_PINS plus trafilatura at the version curate runs (read from this venv)."""
    return DATATROVE_PINS + [f"trafilatura=={metadata.version('trafilatura')}"]


def ensure_venv(venv: Path, requirements: list[str], probe: str = DATATROVE_PROBE) -> Path:
    """A venv at ``venv`` with exactly ``requirements`` installed; its python. Built once per pin set."""
    venv = Path(venv)
    python = venv / "bin" / "python"
    record = venv / ".curate-peer-requirements"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and record.exists() and record.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    check = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd="/")
    if check.returncode != 0:
        raise RuntimeError(f"the peer venv {venv} was built from {requirements} but does not import: "
                           f"{check.stderr.strip().splitlines()[-1] if check.stderr.strip() else check.returncode}")
    record.write_text(wanted)
    return python
