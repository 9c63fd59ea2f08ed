"""``curate tokenizer train|extend|export-hf|export-megatron|export-nanogpt`` and ``curate tokenize``.

Exit codes: 0 done, 1 failed (bad input, training error), 2 usage error
(unknown option, invalid parameter value).
"""

from __future__ import annotations

import json
import sys

import click

from curate.params import ConfigError, build_params
from curate.tokenizers.params import ExtendParams, TokenizeParams, TrainParams

FORMAT_CHOICE = click.Choice(["auto", "curated", "parquet", "jsonl", "txt"])


def _inputs(option_values: tuple[str, ...], extra: tuple[str, ...]) -> list[str]:
    paths = [*option_values, *extra]
    if not paths:
        raise click.UsageError("give at least one --input")
    return paths


def _params(cls, raw: dict, where: str):
    try:
        return build_params(cls, {k: v for k, v in raw.items() if v is not None}, where=where)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None


def _files(paths: list[str], fmt: str, source: str, option: str = "--input"):
    """Input files; a missing path or one of the wrong kind is a usage error, an unreadable one a failure."""
    from curate.tokenizers.corpus import InputError, PathError, input_files

    try:
        return input_files(paths, fmt, source)
    except PathError as err:
        raise click.UsageError(f"{option} {err}") from None
    except InputError as err:
        raise click.ClickException(str(err)) from None


def _output_dir(path: str, option: str = "--output") -> str:
    """An output folder: refuse an existing file (or a file on the way) before any work is done."""
    import os

    probe = os.path.abspath(path)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise click.UsageError(f"{option} {path}: {probe} is a file, not a folder")
    return path


def _weights(values: tuple[str, ...]) -> dict[str, float]:
    weights = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            weights[name] = float(number)
        except ValueError:
            raise click.UsageError(f"--source-weight {value!r}: expected SOURCE=WEIGHT") from None
        if not sep or not name:
            raise click.UsageError(f"--source-weight {value!r}: expected SOURCE=WEIGHT")
    return weights


def _run(action):
    """Run ``action``; bad input or a failed step (ValueError, OSError, SentencePiece's RuntimeError) exits 1."""
    try:
        return action()
    except (ValueError, OSError, RuntimeError) as err:
        raise click.ClickException(str(err)) from None


def _print(report: dict) -> None:
    click.echo(json.dumps({k: v for k, v in report.items() if k != "params"}, indent=2, ensure_ascii=False))


@click.group("tokenizer")
def tokenizer() -> None:
    """Train, extend and export SentencePiece tokenizers."""


def _default(cls, name: str):
    """A Params dataclass field's default: the CLI shows the value the library uses, from one place."""
    import dataclasses

    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default_factory() if f.default is dataclasses.MISSING else f.default
    raise KeyError(name)


def _T(name: str):
    return _default(TrainParams, name)


def _E(name: str):
    return _default(ExtendParams, name)


FORMAT_HELP = "Input format; auto: a curate run dir is read as curated output, files by their suffix."


@tokenizer.command("train")
@click.option("--input", "inputs", multiple=True, help="Curated run dir, or files/dirs/globs (repeatable).")
@click.argument("more_inputs", nargs=-1)
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="auto", show_default=True, help=FORMAT_HELP)
@click.option("--source", default="input", show_default=True, help="Source name for plain inputs.")
@click.option("--output", required=True, help="Folder for tokenizer.model, tokenizer.vocab, report.json.")
@click.option("--vocab-size", type=int, default=_T("vocab_size"), show_default=True, help="Pieces in the model.")
@click.option("--model-type", type=click.Choice(["bpe", "unigram"]), default=_T("model_type"), show_default=True,
              help="SentencePiece algorithm (LLaMA: bpe).")
@click.option("--sample-mb", type=float, default=_T("sample_bytes") / (1 << 20), show_default=True,
              help="MB of text sampled for training.")
@click.option("--source-weight", multiple=True, metavar="SOURCE=WEIGHT",
              help="Share of the sample for a source (repeatable); default: each source's share of the corpus.")
@click.option("--heldout-fraction", type=float, default=_T("heldout_fraction"), show_default=True,
              help="Documents kept out of training for the bytes-per-token report.")
@click.option("--character-coverage", type=float, default=_T("character_coverage"), show_default=True,
              help="Share of characters the vocabulary covers; the rest go through byte fallback.")
@click.option("--special-token", multiple=True, help="User-defined symbol, always one token (repeatable); default none.")
@click.option("--normalization", type=click.Choice(["identity", "nfkc", "nmt_nfkc"]), default=_T("normalization"),
              show_default=True, help="Unicode normalization (identity: the text is not rewritten).")
@click.option("--byte-fallback/--no-byte-fallback", default=_T("byte_fallback"), show_default=True,
              help="Encode characters outside the vocabulary as UTF-8 byte pieces (no <unk>).")
@click.option("--split-digits/--no-split-digits", default=_T("split_digits"), show_default=True,
              help="One digit per token.")
@click.option("--pad-id", type=int, default=_T("pad_id"), show_default=True, help="Id of <pad>; -1: no padding token.")
@click.option("--threads", type=int, default=_T("threads"), show_default=True, help="Trainer threads; 0: every core.")
@click.option("--seed", type=int, default=_T("seed"), show_default=True, help="Seed of the sample and the shuffling.")
def train_command(inputs, more_inputs, fmt, source, output, vocab_size, model_type, sample_mb, source_weight,
                  heldout_fraction, character_coverage, special_token, normalization, byte_fallback, split_digits,
                  pad_id, threads, seed) -> None:
    """Train a SentencePiece tokenizer (LLaMA-like settings) on a sample of the input."""
    from curate.tokenizers.train import train_tokenizer

    params = _params(TrainParams, {
        "vocab_size": vocab_size, "model_type": model_type, "sample_bytes": int(sample_mb * (1 << 20)),
        "source_weights": _weights(source_weight) or None, "heldout_fraction": heldout_fraction,
        "character_coverage": character_coverage, "special_tokens": list(special_token) or None,
        "normalization": normalization, "byte_fallback": byte_fallback, "split_digits": split_digits,
        "pad_id": pad_id, "threads": threads, "seed": seed}, "tokenizer.train")
    files = _files(_inputs(inputs, more_inputs), fmt, source)
    _print(_run(lambda: train_tokenizer(files, _output_dir(output), params)))


@tokenizer.command("extend")
@click.option("--base", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The base SentencePiece BPE tokenizer.model (its ids stay as they are).")
@click.option("--input", "inputs", multiple=True,
              help="Chinese text: a curated run dir (its --lang documents) or files/dirs/globs (repeatable).")
@click.argument("more_inputs", nargs=-1)
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="auto", show_default=True, help=FORMAT_HELP)
@click.option("--source", default="input", show_default=True, help="Source name for plain inputs.")
@click.option("--english", multiple=True,
              help="English held-out text for the identity check (repeatable); default: the curated run's en documents.")
@click.option("--output", required=True, help="Folder for tokenizer.model, tokenizer.vocab, chinese.model, report.json.")
@click.option("--vocab-size", type=int, default=_E("vocab_size"), show_default=True,
              help="Pieces of the Chinese model trained on the input (needs --min-chars-per-piece characters each).")
@click.option("--scripts", default=",".join(_E("scripts")), show_default=True,
              help="Comma-separated scripts a new piece's characters must be in (han, cjk_punct, bopomofo, kana).")
@click.option("--lang", default=_E("lang"), show_default=True,
              help="With curated input, train on documents whose lang starts with this; plain inputs are taken whole.")
@click.option("--max-piece-chars", type=int, default=_E("max_piece_chars"), show_default=True,
              help="Longest new piece in characters; longer ones are mostly phrases the sample repeated.")
@click.option("--min-chars-per-piece", type=float, default=_E("min_chars_per_piece"), show_default=True,
              help="Refuse a sample with fewer characters of the scripts per asked piece; 0: no check.")
@click.option("--sample-mb", type=float, default=_E("sample_bytes") / (1 << 20), show_default=True,
              help="MB of text sampled for training.")
@click.option("--threads", type=int, default=_E("threads"), show_default=True, help="Trainer threads; 0: every core.")
@click.option("--seed", type=int, default=_E("seed"), show_default=True, help="Seed of the sample and the shuffling.")
def extend_command(base, inputs, more_inputs, fmt, source, english, output, vocab_size, scripts, lang,
                   max_piece_chars, min_chars_per_piece, sample_mb, threads, seed) -> None:
    """Append Chinese pieces to a SentencePiece BPE tokenizer; base ids and English tokenization unchanged."""
    from curate.tokenizers.extend import extend_tokenizer

    params = _params(ExtendParams, {
        "vocab_size": vocab_size, "scripts": [s.strip() for s in scripts.split(",") if s.strip()], "lang": lang,
        "max_piece_chars": max_piece_chars, "min_chars_per_piece": min_chars_per_piece,
        "sample_bytes": int(sample_mb * (1 << 20)), "threads": threads, "seed": seed}, "tokenizer.extend")
    files = _files(_inputs(inputs, more_inputs), fmt, source)
    english_files = _files(list(english), "auto", "english", "--english") if english else None
    _output_dir(output)
    _print(_run(lambda: extend_tokenizer(base, files, output, params, english_files)))


@tokenizer.command("export-hf")
@click.argument("model_dir", type=click.Path(exists=True))
@click.option("--output", default=None, help="Folder for the HuggingFace files (default: MODEL_DIR).")
def export_hf_command(model_dir, output) -> None:
    """Write tokenizer files that transformers loads (AutoTokenizer, LlamaTokenizer)."""
    from curate.tokenizers.export_hf import export_hf

    if output is not None:
        _output_dir(output)
    _print(_run(lambda: export_hf(model_dir, output)))


def _export(action):
    """A bad token folder or a dtype its ids do not fit exits 2; a failed read or write exits 1."""
    from curate.tokenizers.export_formats import TokenFolderError

    try:
        return action()
    except TokenFolderError as err:
        error = click.ClickException(str(err))
        error.exit_code = 2
        raise error from None
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None


@tokenizer.command("export-megatron")
@click.argument("tokens_dir", type=click.Path())
@click.option("--output", required=True, help="Folder for <source>_text_document.bin/.idx.")
@click.option("--dtype", type=click.Choice(["auto", "uint16", "int32", "int64"]), default="auto", show_default=True,
              help="auto: uint16 when the vocabulary fits, else int32.")
@click.option("--merge", is_flag=True, help="One text_document.bin/.idx for all sources instead of one per source.")
@click.option("--source", "sources", multiple=True, help="Export only this source (repeatable).")
def export_megatron_command(tokens_dir, output, dtype, merge, sources) -> None:
    """Write `curate tokenize` output as Megatron-LM/NeMo indexed datasets (MMIDIDX .bin + .idx)."""
    from curate.tokenizers.export_formats import MegatronParams, export_megatron

    params = _params(MegatronParams, {"dtype": dtype, "merge": merge, "sources": list(sources)}, "export-megatron")
    _print(_export(lambda: export_megatron(tokens_dir, output, params)))


@tokenizer.command("export-nanogpt")
@click.argument("tokens_dir", type=click.Path())
@click.option("--output", required=True, help="Folder for train.bin, val.bin and meta.pkl (nanoGPT's data/NAME/).")
@click.option("--val-fraction", type=float, default=0.005, show_default=True,
              help="Share of documents, chosen by a hash of their id, in val.bin.")
@click.option("--dtype", type=click.Choice(["uint16", "uint32"]), default="uint16", show_default=True,
              help="uint16 is what nanoGPT's train.py reads.")
@click.option("--source", "sources", multiple=True, help="Export only this source (repeatable).")
def export_nanogpt_command(tokens_dir, output, val_fraction, dtype, sources) -> None:
    """Write `curate tokenize` output as nanoGPT's train.bin/val.bin/meta.pkl."""
    from curate.tokenizers.export_formats import NanoGPTParams, export_nanogpt

    params = _params(NanoGPTParams, {"val_fraction": val_fraction, "dtype": dtype, "sources": list(sources)},
                     "export-nanogpt")
    _print(_export(lambda: export_nanogpt(tokens_dir, output, params)))


@click.command("tokenize")
@click.option("--tokenizer", "tokenizer_path", required=True, type=click.Path(exists=True, dir_okay=True),
              help="tokenizer.model, or a folder holding one.")
@click.option("--input", "inputs", multiple=True, help="Curated run dir, or files/dirs/globs (repeatable).")
@click.argument("more_inputs", nargs=-1)
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="auto", show_default=True, help=FORMAT_HELP)
@click.option("--source", default="input", show_default=True, help="Source name for plain inputs.")
@click.option("--output", required=True,
              help="Folder of token shards, or an object-store prefix (s3://bucket/tokens/); rerun to resume.")
@click.option("--workers", type=int, default=0, show_default=True, help="Parallel tasks; 0: every core.")
@click.option("--eos/--no-eos", default=True, show_default=True, help="EOS after every document.")
@click.option("--executor", type=click.Choice(["auto", "ray", "processes", "in-process"]), default="auto",
              show_default=True, help="Where tasks run: auto = Ray on a cluster, this process for one worker or a "
                                      "small input, else threads of this process where the encoder runs "
                                      "outside the GIL (rank BPE), worker processes otherwise.")
@click.option("--address", envvar="RAY_ADDRESS", default=None,
              help="Ray cluster address (default: none; runs on this machine).")
@click.option("--task-mb", type=float, default=TokenizeParams.task_mb, show_default=True,
              help="Cut a Parquet file with more text than this into tasks of row ranges (one big file on every worker).")
def tokenize_command(tokenizer_path, inputs, more_inputs, fmt, source, output, workers, eos, executor, address,
                     task_mb) -> None:
    """Tokenize documents into per-source uint16/uint32 shards with a document index."""
    import os

    from curate import storage
    from curate.tokenizers.tokenize import TokenizeParams, bring_local_hint, tokenize_corpus

    if os.path.isdir(tokenizer_path):
        tokenizer_path = os.path.join(tokenizer_path, "tokenizer.model")
        if not os.path.isfile(tokenizer_path):
            raise click.UsageError(f"--tokenizer: no tokenizer.model in {os.path.dirname(tokenizer_path)}")
    params = _params(TokenizeParams, {"workers": workers, "eos": eos, "executor": executor, "task_mb": task_mb},
                     "tokenize")
    if address and executor in ("processes", "in-process"):
        raise click.UsageError(f"--executor {executor} cannot run on a cluster (--address / RAY_ADDRESS {address}); "
                               "use auto or ray, or drop the address")
    files = _files(_inputs(inputs, more_inputs), fmt, source)

    def progress(result: dict) -> None:
        click.echo(f"{result['task']}: {result['docs']} docs, {result['tokens']} tokens, "
                   f"{result['seconds']:.1f}s", err=True)

    if storage.is_remote(output):
        try:
            storage.check_location(output)  # no bucket, no credentials: one line, before any work
        except ConfigError as err:
            raise click.UsageError(f"--output {err}") from None
    else:
        _output_dir(output)
    summary = _run(lambda: tokenize_corpus(tokenizer_path, files, output, params, progress, address=address or "",
                                           say=lambda line: click.echo(f"curate tokenize: {line}", err=True)))
    _print(summary)
    if summary["tasks_failed"]:
        raise click.ClickException(f"{len(summary['tasks_failed'])} input(s) failed (rerun to retry them): "
                                   + "; ".join(summary["tasks_failed"].values()))
    if storage.is_remote(output):  # the last line: training and `curate mix` read local files
        click.echo(f"tokens are in {output}; training and `curate mix` memory-map local files: "
                   f"{bring_local_hint(output)}", err=True)


tokenize = tokenize_command  # the name the main CLI registers


def main() -> None:
    """``python -m curate.tokenizers.cli tokenize|tokenizer ...`` until the main CLI registers these."""
    group = click.Group(commands={"tokenizer": tokenizer, "tokenize": tokenize_command})
    group(prog_name="curate")


if __name__ == "__main__":
    sys.exit(main())
