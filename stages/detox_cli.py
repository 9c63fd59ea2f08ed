"""``curate detox ...``: train the fastText toxicity classifier the ``detox`` stage can use."""

from __future__ import annotations

import time

import click


@click.group(name="detox")
def detox() -> None:
    """Toxicity filtering tools."""


@detox.command()
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help='JSONL lines {"text": ..., "label": 0|1} or CSV/TSV with named columns (1 = toxic).')
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Where to write model.bin.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--test-fraction", default=0.1, show_default=True, type=click.FloatRange(0.01, 0.5),
              help="Seeded share of examples held out for the printed metrics.")
@click.option("--epoch", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--word-ngrams", default=2, show_default=True, type=click.IntRange(1, 5),
              help="Word n-grams (character n-grams for Chinese, which is split into characters).")
@click.option("--seed", default=0, show_default=True, type=int)
def train(input_path: str, output: str, text_column: str, label_column: str, test_fraction: float, epoch: int,
          word_ngrams: int, seed: int) -> None:
    """Train a toxicity classifier; prints held-out precision, recall and F1."""
    from curate.stages.detox import train_toxicity_model

    start = time.perf_counter()
    try:
        metrics = train_toxicity_model(input_path, output, text_column=text_column, label_column=label_column,
                                       test_fraction=test_fraction, seed=seed, epoch=epoch, word_ngrams=word_ngrams)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    click.echo(f"precision {metrics.precision:.3f}  recall {metrics.recall:.3f}  F1 {metrics.f1:.3f}  "
               f"accuracy {metrics.accuracy:.3f}  (held out {metrics.n_test}, trained on {metrics.n_train}, "
               f"{time.perf_counter() - start:.1f}s)")
    click.echo(f"model written to {output}; use it with --set detox.model={output}")


def main() -> None:  # pragma: no cover - for `python -m curate.stages.detox_cli`
    detox()


if __name__ == "__main__":  # pragma: no cover
    main()
