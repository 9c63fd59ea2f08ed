"""The ``curate`` command line.

Exit codes: 0 done, 1 failed or incomplete, 2 usage or config error.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from curate import __version__
from curate.params import ConfigError

# Piped output (CI, `| less`) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CurateGroup(click.Group):
    """Turns a ConfigError anywhere below into a clear message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            err_console.print(f"[bold red]config error[/bold red] {err}")
            sys.exit(EXIT_USAGE)


@click.group(cls=CurateGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="curate")
def main() -> None:
    """curate: raw text dumps in, a pre-training corpus out.

    \b
    curate run pipeline.yaml --output out/        run a pipeline (resumable)
    curate stats out/                             the funnel: kept and dropped per source and stage
    curate sql out/ "SELECT ..."                  any DuckDB query over docs, rejects, stats
    curate demo                                   build a small raw input and run everything on it
    """


@main.command()
@click.argument("config_file", required=False, type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--input", "-i", "inputs", multiple=True, help="Input file, glob or directory (shortcut without a config).")
@click.option("--format", "-f", "fmt", help="Input format: warc wet arc html jsonl parquet txt code.")
@click.option("--source", "-s", help="Source name for the input (default: the format).")
@click.option("--stages", help="Comma-separated stages to run instead of the format's defaults, in order.")
@click.option("--set", "overrides", multiple=True, metavar="STAGE.PARAM=VALUE", help="Override a stage parameter.")
@click.option("--workers", "-w", type=click.IntRange(min=1), help="Parallel workers (default: all CPUs).")
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster address (default: an embedded local Ray).")
@click.option("--overwrite", is_flag=True, help="Replace an output directory that holds a different run.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def run(config_file, output, inputs, fmt, source, stages, overrides, workers, address, overwrite, no_progress):
    """Run a pipeline from CONFIG_FILE, or the default pipeline on --input/--format.

    \b
    Default stages per --format (--stages replaces them, e.g. to add c4,fineweb for books):
      warc, wet, arc, html, jsonl, parquet:
        extract, length, langid, gopher_repetition, gopher_quality, c4, fineweb, detox, dedup, pii
      txt (books: C4 and FineWeb judge web-page lines, not a book's print lines or dialogue):
        extract, length, langid, gopher_repetition, gopher_quality, detox, dedup, pii
        with gopher_quality.max_doc_words=1000000 (a whole novel is one document)
      code:
        extract, length, code_quality, dedup, pii

    \b
    Rerunning the same command resumes: finished tasks are skipped.
    Output: OUTPUT/docs (kept), OUTPUT/rejects (dropped, with reason),
    OUTPUT/stats (per task and stage), OUTPUT/manifest.json.
    """
    from curate.config import from_shortcut, load_config
    from curate.pool import ClusterUnavailable
    from curate.runner import Runner

    if config_file and (inputs or fmt):
        raise click.UsageError("give either a config file or --input/--format, not both")
    if config_file:
        if stages or overrides or source:
            raise click.UsageError("--stages/--set/--source go with --input; edit the config file instead")
        config = load_config(config_file)
    else:
        if not inputs or not fmt:
            raise click.UsageError("give a config file, or --input and --format")
        config = from_shortcut(list(inputs), fmt, source, [s.strip() for s in stages.split(",")] if stages else None,
                               list(overrides))
    try:
        summary = Runner(config, output, workers=workers, address=address, overwrite=overwrite,
                         show_progress=not no_progress).run()
    except ClusterUnavailable as err:
        err_console.print(f"[bold red]error[/bold red] {err}")
        sys.exit(EXIT_FAILED)
    if summary.already_complete:
        console.print(f"[bold]curate[/bold] {output}: this run is already complete "
                      f"({summary.docs:,} docs kept, {summary.rejects:,} rejected); nothing to do.")
        sys.exit(EXIT_OK)
    print_funnel(output)
    warn_stage_errors(output)
    console.print(
        f"[bold]curate[/bold] {summary.tasks_run} tasks run, {summary.tasks_skipped} already done; "
        f"{summary.docs:,} docs kept, {summary.rejects:,} rejected in {summary.seconds:.1f}s "
        f"(Ray start {summary.ray_start_seconds:.1f}s) -> {output}")
    if summary.failed:
        err_console.print(f"[bold red]{len(summary.failed)} task(s) failed[/bold red] (rerun the same command to retry):")
        for task, error in summary.failed.items():
            err_console.print(f"  {task}: {error}")
        sys.exit(EXIT_FAILED)


def print_funnel(output: str, by_lang: bool = False) -> None:
    from curate import stats

    con = stats.connect(output)
    table = Table(title=f"funnel: {output}", show_lines=False)
    for name, justify in [("source", "left"), ("stage", "left"), ("docs in", "right"), ("docs out", "right"),
                          ("MB in", "right"), ("MB out", "right"), ("kept", "right"), ("rejected", "right"),
                          ("skipped", "right"), ("s", "right")]:
        table.add_column(name, justify=justify, overflow="fold")
    table.add_column("top reasons", overflow="fold")
    for source, stage, din, dout, bin_, bout, share, rejected, skipped, seconds, reasons in stats.funnel(con):
        table.add_row(source, stage, f"{din:,}", f"{dout:,}", f"{bin_ / 1e6:.2f}", f"{bout / 1e6:.2f}",
                      "" if share is None else f"{share:.1%}", f"{rejected:,}", f"{skipped:,}", f"{seconds:.2f}",
                      reasons)
    console.print(table)
    if by_lang:
        lang_table = Table(title="by language")
        for name in ("source", "lang", "kept", "rejected", "kept share"):
            lang_table.add_column(name)
        for source, lang, kept, rejected, share in stats.by_language(con):
            lang_table.add_row(source, lang, f"{kept:,}", f"{rejected:,}", f"{share:.1%}")
        console.print(lang_table)


def warn_stage_errors(output: str) -> None:
    from curate import stats

    errors = stats.stage_errors(stats.connect(output))
    if errors:
        total = sum(docs for _, _, docs in errors)
        err_console.print(f"[bold yellow]warning[/bold yellow] {total:,} documents were rejected because a stage or "
                          f"reader raised (quarantined in {output}/rejects):")
        for stage, reason, docs in errors[:5]:
            err_console.print(f"  {stage}: {reason} ({docs:,})")


@main.command(name="stats")
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@click.option("--db", "database", type=click.Path(dir_okay=False), help="Also write a DuckDB file with the views.")
@click.option("--by-lang", is_flag=True, help="Also show kept and rejected documents per source and language.")
def stats_command(output, database, by_lang):
    """Print the funnel of a run: per source and stage, docs and bytes in and out, share kept, top reasons."""
    from curate import stats

    print_funnel(output, by_lang=by_lang)
    if database:
        stats.write_database(output, database)
        console.print(f"wrote {database}: views docs, rejects, stats (open with `duckdb {database}`)")


@main.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@click.argument("query")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
def sql(output, query, as_csv):
    """Run a DuckDB QUERY over the views docs, rejects and stats of OUTPUT."""
    import duckdb

    from curate import stats

    con = stats.connect(output)
    try:
        cursor = con.execute(query)
    except duckdb.Error as err:
        err_console.print(f"[bold red]query error[/bold red] {err}")
        sys.exit(EXIT_USAGE)
    if cursor.description is None:
        return
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if as_csv:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
        return
    table = Table()
    for name in names:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v)[:200] for v in row))
    console.print(table)
    console.print(f"{len(rows):,} rows")


@main.command()
def stages():
    """List the stages and readers with their parameters and defaults."""
    import dataclasses

    from curate.readers import READERS, reader_class
    from curate.stage import STAGES, stage_class

    for title, registry, loader, attr in (("stages", STAGES, stage_class, "Params"),
                                         ("formats", READERS, reader_class, "Options")):
        console.print(f"[bold]{title}[/bold]")
        for name in registry:
            try:
                cls = loader(name)
            except (ConfigError, ImportError) as err:
                console.print(f"  {name}: unavailable ({err})")
                continue
            described = cls.__doc__ or sys.modules[cls.__module__].__doc__ or ""
            doc = described.strip().splitlines()[0] if described.strip() else ""
            console.print(f"  [cyan]{name}[/cyan]  {doc}")
            for f in dataclasses.fields(getattr(cls, attr)):
                default = f.default if f.default is not dataclasses.MISSING else (
                    f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
                console.print(f"      {f.name} = {default!r}")


@main.command()
@click.argument("directory", default="curate-demo", type=click.Path(file_okay=False))
@click.option("--workers", "-w", type=click.IntRange(min=1), help="Parallel workers (default: all CPUs).")
@click.option("--overwrite", is_flag=True, help="Rebuild the demo from scratch.")
def demo(directory, workers, overwrite):
    """Build a small raw input (WARC, books, code) in DIRECTORY and run the whole pipeline on it."""
    from curate.demo import run_demo

    sys.exit(run_demo(directory, workers=workers, overwrite=overwrite))


def _register_commands_that_live_with_their_code() -> None:
    from curate.card import card
    from curate.dashboards.cli import dashboard
    from curate.mixtures.cli import mix
    from curate.stages.detox_cli import detox
    from curate.stages.quality_cli import quality
    from curate.tokenizers.cli import tokenize, tokenizer
    from curate.trainer.cli import train

    for command in (quality, detox, tokenizer, tokenize, mix, train, dashboard):
        main.add_command(command)
    main.add_command(card)


_register_commands_that_live_with_their_code()


if __name__ == "__main__":
    main()
