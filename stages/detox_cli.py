"""``curate detox ...``: train the fastText toxicity classifier the ``detox`` stage can use."""

from __future__ import annotations

import csv
import time

import click

from curate.stages.quality_cli import build_train_options, check_output, print_training, training_options


@click.group(name="detox")
def detox() -> None:
    """Toxicity filtering tools."""


@detox.command()
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help='JSONL lines {"text": ..., "label": 0|1} or CSV/TSV with named columns (1 = toxic).')
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Where to write model.bin.")
@click.option("--text-column", default="text", show_default=True, help="Column (or JSON field) of the text.")
@click.option("--label-column", default="label", show_default=True, help="Column (or JSON field) of the 0/1 label.")
@training_options
def train(input_path: str, output: str, text_column: str, label_column: str, size: str, balance: str,
          test_fraction: float, epoch: int, word_ngrams: int, seed: int) -> None:
    """Train a toxicity classifier; prints held-out precision, recall and F1."""
    from curate.stages.detox import train_toxicity_model

    check_output(output)
    options = build_train_options("detox train", size=size, balance=balance, test_fraction=test_fraction,
                                  epoch=epoch, word_ngrams=word_ngrams, seed=seed)
    start = time.perf_counter()
    try:
        report = train_toxicity_model(input_path, output, options, text_column=text_column, label_column=label_column)
    except (ValueError, csv.Error) as err:
        raise click.UsageError(f"{input_path}: {err}" if input_path not in str(err) else str(err)) from None
    except OSError as err:
        raise click.ClickException(f"{input_path}: cannot read ({err.strerror or err})") from None
    print_training(report, {1: "toxic", 0: "non-toxic"}, output, time.perf_counter() - start)
    click.echo(f"use it with --set detox.model={output}")


def main() -> None:  # pragma: no cover - for `python -m curate.stages.detox_cli`
    detox()


if __name__ == "__main__":  # pragma: no cover
    main()
