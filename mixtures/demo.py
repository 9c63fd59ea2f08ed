"""The mixture step of ``curate demo``: blend the demo's token shards and print the table.

The weights are chosen so that the table shows every rule at the demo's size: the
Chinese web pages are few, so their share would need more than ``max_epochs`` passes;
they are capped and the rest of their share goes to the others. The code component
keeps the longer half of the files by a signal column of the curated run.
"""

from __future__ import annotations

import os

DEMO_MIXTURE = """\
# The mixture `curate demo` builds: curate mix mixture.yaml --output mix/
tokens: 100K              # training budget (a real one: 300B)
seq_len: 256              # samples are seq_len + 1 tokens
seed: 1234
max_epochs: 4
validation: 0.1           # share of each component's documents held out, by a hash of the id
paths: [tokens]           # `curate tokenize` output
curated: [out]            # the curated run: its signal columns can select documents
components:
  - {name: web-en, source: web, lang: en, weight: 0.3}
  - {name: web-zh, source: web, lang: zh, weight: 0.2}
  - {name: books, source: books, weight: 0.3}
  - name: code-longer-half
    source: code
    where: {char_count: {quantile: [0.5, 1.0]}}
    weight: 0.2
"""


def mixture_step(directory: str, console) -> int:
    """Write ``DIR/mixture.yaml``, build ``DIR/mix`` and print its table; returns the exit code."""
    from rich.console import Console

    from curate.mixtures.build import build_mixture
    from curate.mixtures.cli import print_table
    from curate.mixtures.config import load_config
    from curate.mixtures.dataset import MixtureDataset

    config_path = os.path.join(directory, "mixture.yaml")
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(DEMO_MIXTURE)
    output = os.path.join(directory, "mix")
    meta = build_mixture(load_config(config_path), output, overwrite=True)
    # the table has nine columns: a log or a pipe gets it wide rather than folded into 80 columns
    print_table(meta, console if console.is_terminal else Console(width=160))
    ds = MixtureDataset(output)
    console.print(f"  {len(ds):,} training samples of {ds.seq_len + 1} tokens; sample 0 is from "
                  f"{ds.component_of(0)}: {ds[0][:12].tolist()} …")
    console.print(f"  read it: python -c \"from curate.mixtures import MixtureDataset; "
                  f"ds = MixtureDataset('{output}'); print(len(ds), ds[0])\"")
    console.print(f"  query it: curate sql {directory}/out \"SELECT component, round(epochs, 2) AS epochs, capped "
                  f"FROM '{output}/mixture.parquet'\"")
    return 0
