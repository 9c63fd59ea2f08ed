"""``curate mix mixture.yaml --output MIX``: build a mixture and print GPT-3's table.

Exit codes: 0 done, 1 a damaged input, 2 a config error (the file and key are named).
"""

from __future__ import annotations

import sys

import click


def _tokens(n: float) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:,.0f}"


def print_table(meta: dict, console=None) -> None:
    """The table users check by hand: tokens, weights asked and realized, epochs, validation."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    title = (f"mixture {meta['fingerprint']}: {_tokens(meta['tokens'])} tokens, seq_len {meta['seq_len']}, "
             f"{meta['train_samples']:,} training samples, weights {meta['weights']}"
             + (f" (T={meta['temperature']:g})" if meta.get("temperature") is not None else ""))
    table = Table(title=title)
    for name in ("component", "documents", "tokens available", "weight asked", "weight realized",
                 "tokens drawn", "epochs elapsed", "val documents", "val tokens"):
        table.add_column(name, justify="left" if name == "component" else "right")
    for c in meta["components"]:
        epochs = f"{c['epochs']:.2f}" + (f" (cap {c['max_epochs']:g})" if c["capped"] else "")
        table.add_row(c["name"], f"{c['documents']:,}", _tokens(c["tokens_available"]), f"{c['weight_asked']:.1%}",
                      f"{c['weight_realized']:.1%}", _tokens(c["tokens_drawn"]), epochs, f"{c['val_documents']:,}",
                      _tokens(c["val_tokens"]))
    console.print(table)
    capped = [c["name"] for c in meta["components"] if c["capped"]]
    if capped:
        console.print(f"capped at max_epochs: {', '.join(capped)}; the budget they could not take went to the "
                      "others in proportion to their weights")
    missing = [(c["name"], c["missing_signals"]) for c in meta["components"] if c.get("missing_signals")]
    for name, count in missing:
        console.print(f"[yellow]note[/yellow] {name}: {count:,} documents have no row in the curated run(s), so "
                      "their signal conditions did not match")


@click.command("mix")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Mixture folder (not needed with --dry-run).")
@click.option("--dry-run", is_flag=True, help="Only print the table; write nothing.")
@click.option("--overwrite", is_flag=True, help="Replace a mixture built from another config or other inputs.")
def mix(config_file, output, dry_run, overwrite) -> None:
    """Blend token folders into a training mixture: GPT-3-style weights, the epochs table, a fixed sample order.

    \b
    curate mix mixture.yaml --output MIX           write MIX/mixture.json, mixture.parquet and the index
    curate mix mixture.yaml --dry-run              only print the table
    The trainer reads MIX with curate.mixtures.MixtureDataset (see docs/mixture.md).
    """
    from rich.console import Console

    from curate.mixtures.build import build_mixture
    from curate.mixtures.config import load_config
    from curate.mixtures.documents import MixtureInputError

    if not output and not dry_run:
        raise click.UsageError("give --output MIX (or --dry-run)")
    console = Console(width=None if sys.stdout.isatty() else 160)
    config = load_config(config_file)
    try:
        meta = build_mixture(config, output or "", overwrite=overwrite, dry_run=dry_run)
    except (MixtureInputError, OSError) as err:
        raise click.ClickException(str(err)) from None
    print_table(meta, console)
    build = meta["build"]
    seconds = ", ".join(f"{k} {v:.2f}s" for k, v in build["seconds"].items())
    if dry_run:
        console.print(f"dry run: nothing written ({seconds})")
    elif build["reused"]:
        console.print(f"{output} already holds this mixture (fingerprint {meta['fingerprint']}); nothing to do")
    else:
        console.print(f"wrote {output}: {meta['train_samples']:,} training and {meta['val_samples']:,} validation "
                      f"samples of {meta['seq_len'] + 1} tokens ({seconds})")
