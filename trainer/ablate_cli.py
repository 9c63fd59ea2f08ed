"""``curate ablate NAME=MIX NAME=MIX … --tokens N --eval EVAL --output DIR``: which data makes the better model.

Exit codes: 0 done, 1 a failure while training or evaluating (rerun to resume), 2 a usage or config
error (one line naming the file and key; nothing is written). Nothing here imports torch at import time.
"""

from __future__ import annotations

import os
import sys

import click

from curate.trainer.cli import INSTALL_HINT
from curate.trainer.config import PRESETS


def print_results(body: dict, console=None) -> None:
    """One table per evaluation set: loss, bits per byte, the difference to the baseline, its interval, verdict."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    seeds = len(body["seeds"])
    for e in body["eval_sets"]:
        rows = [r for r in body["rows"] if r["eval_set"] == e["name"] and r["seed"] is None]
        unit = "documents" if e["kind"] != "val" else "samples"
        # names and paths are data: Text, never markup or emoji codes (``val:a`` is not an emoji)
        table = Table(title=Text(f"{e['name']}: {e['units']:,} {unit}, {e['tokens']:,} tokens, {e['bytes']:,} bytes "
                                 f"({e['kind']}: {e['path']})"), title_justify="left")
        for name in ("mixture", "loss", f"sd ({seeds} seeds)" if seeds > 1 else "sd", "bits/byte",
                     f"Δ loss vs {body['baseline']}", f"{body['confidence']:.0%} CI", "verdict"):
            table.add_column(name, justify="left" if name in ("mixture", "verdict") else "right",
                             overflow="fold")
        for r in rows:
            ci = "" if r["ci_low"] is None else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
            table.add_row(Text(r["mixture"]), f"{r['loss']:.4f}",
                          "" if r["loss_std"] is None else f"{r['loss_std']:.4f}",
                          "" if r["bits_per_byte"] is None else f"{r['bits_per_byte']:.4f}",
                          "" if r["mixture"] == body["baseline"] else f"{r['delta_vs_first']:+.4f}", ci,
                          Text(r["verdict"] or ""))
        console.print(table)


@click.command("ablate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("mixtures", nargs=-1, metavar="NAME=MIX NAME=MIX...")
@click.option("--tokens", "-t", required=True, help="Training tokens per run: 2M, 50M, 1e9 (whole optimizer steps).")
@click.option("--eval", "evals", multiple=True, metavar="[NAME=]PATH",
              help="Held-out text: a `curate tokenize` folder (or one source's folder in it), or JSONL/txt/Parquet "
                   "files or folders, tokenized with the mixtures' tokenizer. Repeat for several sets.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Ablation folder: NAME-seedK/ training runs, evals/, results.json, results.parquet.")
@click.option("--preset", type=click.Choice(list(PRESETS)), help="Model preset (default: the config's, else tiny).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Runs per mixture (seeds seed … seed+N-1).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="A `curate train` config file every run shares.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a training key for every run (global_batch_tokens=65536, lr=1e-3, warmup_steps=20).")
@click.option("--val-samples", type=int, default=256, show_default=True,
              help="Samples of each mixture's validation split scored too (0: none).")
@click.option("--resamples", type=int, default=2000, show_default=True, help="Bootstrap resamples over documents.")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Interval level: 0.9, 0.95 or 0.99.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="GPUs per training run (>1 starts torchrun through `curate train`).")
@click.option("--no-progress", is_flag=True, help="No training progress lines.")
def ablate(mixtures, tokens, evals, output, preset, seeds, config_file, overrides, val_samples, resamples, confidence,
           nproc, no_progress) -> None:
    """Train the same model on each mixture for the same tokens, evaluate all on the same held-out text.

    \b
    curate ablate raw=mix-raw/ curated=mix-curated/ --tokens 20M --eval books.jsonl --eval zh=wiki/ -o abl/
    curate ablate a=a.yaml b=b.yaml --tokens 2B --preset 125m --seeds 2 --eval heldout-tokens/ -o abl/
    A mixture file (.yaml) is built into DIR/mixtures/NAME with --tokens as its budget. Rerun the same
    command after a crash: finished runs are reused, an unfinished one resumes from its checkpoint.
    Results: DIR/results.parquet (DuckDB: SELECT * FROM 'DIR/results.parquet' WHERE seed IS NULL).
    """
    from rich.console import Console

    from curate.mixtures.config import parse_tokens
    from curate.trainer.ablate import AblateError, AblateParams, plan_ablation, run_ablation

    try:
        import torch  # noqa: F401
    except ImportError:
        click.echo(f"error: {INSTALL_HINT}", err=True)
        sys.exit(2)
    budget = parse_tokens(tokens, file=None, key="--tokens")
    params = AblateParams(tokens=budget, seeds=seeds, val_samples=val_samples, resamples=resamples,
                          confidence=confidence)
    plan = plan_ablation(list(mixtures), list(evals), params, output, config_file=config_file,
                         overrides=list(overrides), preset=preset)
    from rich.text import Text

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(f"ablation: {len(plan.mixtures)} mixtures x {len(plan.seeds)} seed(s), {plan.params.tokens:,} "
                  f"tokens each ({plan.steps} steps of {plan.config.global_batch_tokens:,}), model "
                  f"{plan.config.model.preset}, {len(plan.eval_sets)} evaluation set(s) so far", highlight=False)
    try:
        body = run_ablation(plan, nproc=nproc, progress=not no_progress,
                            echo=lambda text: console.print(Text(text)))
    except AblateError as err:
        click.echo(f"{'config error' if err.exit_code == 2 else 'error'}: {err}", err=True)
        sys.exit(err.exit_code)
    print_results(body, console)
    console.print(f"wrote {os.path.join(plan.output, 'results.json')} and results.parquet "
                  f"({body['seconds']:.0f}s)", highlight=False)
