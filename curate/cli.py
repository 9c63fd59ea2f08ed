"""The ``curate`` command line.

Exit codes: 0 done, 1 failed or incomplete, 2 usage or config error.
"""

from __future__ import annotations

import os
import sys

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curate import __version__
from curate.params import ConfigError


def _width(stream) -> int | None:
    """Output width: the terminal's (also when piped into ``less``), ``COLUMNS`` if set, else 160 for logs."""
    if stream.isatty():
        return None  # rich asks the terminal
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns
        except OSError:
            continue
    return 160


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Terminal columns from which the funnel is one table with its reasons (narrower: counts, then reasons).
FUNNEL_WIDE = 140


class CurateGroup(click.Group):
    """Turns a ConfigError anywhere below into a clear message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            err_console.print(f"[bold red]config error[/bold red] {err}", highlight=False)
            sys.exit(EXIT_USAGE)
        except OSError as err:  # a file that vanished, a full disk ...: one line, not a traceback
            err_console.print(f"[bold red]error[/bold red] {err}", highlight=False)
            sys.exit(EXIT_FAILED)


class OutputPath(click.Path):
    """A run's output folder, or a URL of one in an object store (``s3://bucket/run/``: curate.remote).

    Not checked here: whether it is a run is ``curate.stats.read_manifest``'s one-line error, the same
    for every command that reads a run (stats, sql, card, dashboard)."""

    def __init__(self):
        super().__init__()


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
@click.argument("args", nargs=-1, metavar="[CONFIG_FILE]")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Output directory, or an object-store prefix (s3://bucket/run/, gs://...).")
@click.option("--input", "-i", "inputs", multiple=True,
              help="Input files, globs or directories (shortcut without a config); takes several: "
                   "`--input dumps/*.jsonl` unquoted works.")
@click.option("--input-list", "input_list", metavar="URL_OR_PATH",
              help="A file (or URL) listing inputs one a line, gzip or not: Common Crawl's warc.paths.gz.")
@click.option("--input-base", default="https://data.commoncrawl.org/", show_default=True,
              help="Prefix of the relative paths in --input-list (s3://commoncrawl/ reads CC from S3).")
@click.option("--format", "-f", "fmt", help="Input format: warc wet arc html jsonl parquet txt code.")
@click.option("--source", "-s", help="Source name for the input (default: the format).")
@click.option("--stages", help="Comma-separated stages to run instead of the format's defaults, in order.")
@click.option("--set", "overrides", multiple=True, metavar="STAGE.PARAM=VALUE",
              help="Override a stage parameter (a list as en,zh or [en, zh]), or a run setting: run.task_mb=8.")
@click.option("--workers", "-w", type=click.IntRange(min=1), help="Parallel workers (default: all CPUs).")
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster address (default: an embedded local Ray).")
@click.option("--overwrite", is_flag=True, help="Replace an output directory that holds a different run.")
@click.option("--break-lock", is_flag=True,
              help="Object-store output: take over the lock of a run that is not working any more.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def run(args, output, inputs, input_list, input_base, fmt, source, stages, overrides, workers, address, overwrite,
        break_lock, no_progress):
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
    from curate.runner import OutputLocked, Runner

    config_file = None
    if input_list:
        from curate.remote import read_input_list

        inputs = (*inputs, *read_input_list(input_list, input_base))
    if inputs:  # the shell expanded `--input dumps/*.jsonl` into several words: the others land here
        if any(a.lower().endswith((".yaml", ".yml")) for a in args):
            raise click.UsageError("give either a config file or --input/--format, not both")
        inputs = (*inputs, *args)
    elif len(args) > 1:
        raise click.UsageError(f"one config file at most, got {len(args)}: {' '.join(args)} "
                               "(several inputs go after --input)")
    elif args:
        config_file = args[0]
    if config_file and fmt:
        raise click.UsageError("give either a config file or --input/--format, not both")
    if config_file:
        run_overrides = [o for o in overrides if o.startswith("run.")]
        if stages or source or len(run_overrides) < len(overrides):
            raise click.UsageError("--stages/--set STAGE.PARAM/--source go with --input; edit the config file "
                                   "instead (--set run.SETTING works with both)")
        config = load_config(config_file, run_overrides)
    else:
        if not inputs or not fmt:
            raise click.UsageError("give a config file, or --input and --format")
        config = from_shortcut(list(inputs), fmt, source, [s.strip() for s in stages.split(",")] if stages else None,
                               list(overrides))
    try:
        summary = Runner(config, output, workers=workers, address=address, overwrite=overwrite,
                         show_progress=not no_progress, break_lock=break_lock).run()
    except (ClusterUnavailable, OutputLocked) as err:
        err_console.print(f"[bold red]error[/bold red] {err}", highlight=False)
        sys.exit(EXIT_FAILED)
    if summary.inputs_touched:
        shown = ", ".join(summary.inputs_touched[:3]) + (" ..." if len(summary.inputs_touched) > 3 else "")
        err_console.print(f"[bold]curate[/bold] {len(summary.inputs_touched)} input(s) have a new modification time "
                          f"but the same size and content check, taken as unchanged: {shown} (--overwrite redoes "
                          "the run)", highlight=False)
    if summary.lock_taken_over:
        err_console.print(f"[bold]curate[/bold] took over the lock of a run that ended without releasing it "
                          f"({summary.lock_taken_over})", highlight=False)
    if summary.already_complete:
        console.print(f"[bold]curate[/bold] {output}: this run is already complete "
                      f"({summary.docs:,} docs kept, {summary.rejects:,} rejected); nothing to do.")
        sys.exit(EXIT_OK)
    print_funnel(output)
    warn_stage_errors(output)
    warn_empty_inputs(output)
    report_renamed_ids(summary.ids_renamed)
    console.print(
        f"[bold]curate[/bold] {summary.tasks_run} tasks run, {summary.tasks_skipped} already done; "
        f"{summary.docs:,} docs kept, {summary.rejects:,} rejected in {summary.seconds:.1f}s "
        f"({_executor_said(summary)}) -> {output}")
    if summary.failed:
        err_console.print(f"[bold red]{len(summary.failed)} task(s) failed[/bold red] (rerun the same command to retry):")
        for task, error in summary.failed.items():
            err_console.print(f"  {task}: {error}")
        sys.exit(EXIT_FAILED)


def _executor_said(summary) -> str:
    if summary.executor == "in-process":
        return "in process, no Ray"
    return f"Ray start {summary.ray_start_seconds:.1f}s, stop {summary.ray_stop_seconds:.1f}s"


def print_funnel(output: str, by_lang: bool = False) -> None:
    from curate import stats

    con = stats.connect(output)
    rows = stats.funnel(con)
    # A wide terminal gets one table; a narrow one (or COLUMNS=80) the counts, then the reasons below
    # them, one folded line per stage: the table never runs past the terminal's edge.
    wide = console.width >= FUNNEL_WIDE
    table = Table(title=f"funnel: {output}", show_lines=False, box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD,
                  pad_edge=wide)
    columns = [("source", "left"), ("stage", "left"), ("docs in", "right"), ("docs out", "right"),
               ("MB in", "right"), ("MB out", "right"), ("kept", "right"), ("rejected", "right"),
               ("skipped", "right"), ("s", "right")]
    shown = [c for c in columns if wide or c[0] not in ("MB in", "MB out", "s")]
    for name, justify in shown:
        table.add_column(name, justify=justify, overflow="fold")
    if wide:
        table.add_column("top reasons", overflow="fold")
    for source, stage, din, dout, bin_, bout, share, rejected, skipped, seconds, reasons in rows:
        cells = {"source": source, "stage": stage, "docs in": f"{din:,}", "docs out": f"{dout:,}",
                 "MB in": f"{bin_ / 1e6:.2f}", "MB out": f"{bout / 1e6:.2f}",
                 "kept": "" if share is None else f"{share:.1%}", "rejected": f"{rejected:,}",
                 "skipped": f"{skipped:,}", "s": f"{seconds:.2f}"}
        table.add_row(*(escape(cells[name]) for name, _ in shown), *([escape(reasons)] if wide else []))
    console.print(table)
    if not wide and any(reasons for *_, reasons in rows):
        console.print("[bold]top reasons[/bold]")
        for source, stage, *_, reasons in rows:
            if reasons:
                console.print(f"  {escape(source)} {escape(stage)}: {escape(reasons)}", highlight=False)
    from curate.timing import print_timing

    print_timing(con, console)  # the steps between and around tasks too (stats/timing)
    if by_lang:
        lang_table = Table(title="by language")
        for name in ("source", "lang", "kept", "rejected", "kept share"):
            lang_table.add_column(name)
        for source, lang, kept, rejected, share in stats.by_language(con):
            lang_table.add_row(source, lang, f"{kept:,}", f"{rejected:,}", f"{share:.1%}")
        console.print(lang_table)


def warn_stage_errors(output: str) -> None:
    from curate import stats

    con = stats.connect(output)
    errors = stats.stage_errors(con)
    if errors:
        total = sum(docs for _, _, docs in errors)
        err_console.print(f"[bold yellow]warning[/bold yellow] {total:,} documents were rejected because a stage or "
                          f"reader raised (quarantined in {output}/rejects):", highlight=False)
        for stage, reason, docs in errors[:5]:
            err_console.print(f"  {stage}: {reason} ({docs:,})", highlight=False)
        unread = con.execute("SELECT reject_reason FROM rejects WHERE reject_stage = 'read' "
                             "AND reject_reason LIKE 'read-error:%' ORDER BY path LIMIT 6").fetchall()
        for (reason,) in unread[:5]:  # which inputs could not be read, and why (the reason names the file)
            err_console.print(f"    {reason.removeprefix('read-error:')[:300]}", highlight=False)
        if len(unread) > 5:
            err_console.print(f"    ... (curate sql {output} \"SELECT path, reject_reason FROM rejects "
                              "WHERE reject_stage = 'read'\")", highlight=False)


def warn_empty_inputs(output: str) -> None:
    """Inputs that yielded no record: an empty file, or one that is not of its format (a gzip of text read as WARC)."""
    from curate import stats, storage

    empty = stats.empty_inputs(stats.connect(output))
    if not empty:
        return
    try:
        manifest = storage.read_json(storage.join(output, "manifest.json"))
        formats = {i["source"]: i["format"] for i in manifest.get("config", {}).get("inputs", [])}
    except (OSError, ValueError, KeyError):
        formats = {}
    err_console.print(f"[bold yellow]warning[/bold yellow] {len(empty)} input{'s' if len(empty) > 1 else ''} "
                      "yielded no records (empty, or not of the format given):", highlight=False)
    for source, path in empty[:10]:
        err_console.print(f"  {path} ({formats.get(source, source)})", highlight=False)
    if len(empty) > 10:
        err_console.print(f"  ... and {len(empty) - 10} more", highlight=False)


def report_renamed_ids(renamed: int) -> None:
    if renamed:
        console.print(f"[bold]ids[/bold] {renamed:,} documents had an id that another document of the run also had: "
                      "each got a unique id, and the id it was given is kept in the column given_id "
                      "(docs/schema.md)", highlight=False)


@main.command(name="stats")
@click.argument("output", type=OutputPath())
@click.option("--db", "database", type=click.Path(dir_okay=False), help="Also write a DuckDB file with the views.")
@click.option("--by-lang", is_flag=True, help="Also show kept and rejected documents per source and language.")
def stats_command(output, database, by_lang):
    """Print the funnel of a run: per source and stage, docs and bytes in and out, share kept, top reasons.

    
    --db FILE writes a DuckDB database whose views read the run's Parquet by paths relative to FILE's
    folder: open it from there (`cd OUT && duckdb run.duckdb`). It keeps working when the output folder
    moves with it; after other moves, run this command again to refresh it.
    """
    from curate import stats

    if database:
        stats.write_database(output, database)
    print_funnel(output, by_lang=by_lang)
    report_renamed_ids(stats.renamed_ids(stats.connect(output)))
    if database and stats.is_remote(output):
        console.print(f"wrote {os.path.abspath(database)}: views docs, rejects, stats, timing reading {output} "
                      "in place (open it with a DuckDB that has the httpfs extension and a secret for the store, "
                      "or from Python after con.register_filesystem; docs/cluster.md)", highlight=False)
    elif database:
        folder = os.path.dirname(os.path.abspath(database))
        console.print(f"wrote {database}: views docs, rejects, stats with paths relative to its folder "
                      f"(open it there: cd {folder} && duckdb {os.path.basename(database)})", highlight=False)


@main.command()
@click.argument("output", type=OutputPath())
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


def _description(name: str, cls: type, loaded: dict) -> str:
    """A class's own docstring (``__doc__`` is not inherited: a subclass without one has None); else its
    module's, marked as shared when the module holds several of them, so no stage wears another's words."""
    own = (cls.__dict__.get("__doc__") or "").strip()
    if own:
        return own.splitlines()[0]
    module = (sys.modules[cls.__module__].__doc__ or "").strip()
    if not module:
        return ""
    siblings = [n for n, c in loaded.items() if isinstance(c, type) and c.__module__ == cls.__module__]
    shared = f" (shared by {', '.join(siblings)})" if len(siblings) > 1 else ""
    return module.splitlines()[0] + shared


@main.command()
def stages():
    """List the stages and readers with their parameters and defaults."""
    import dataclasses

    from curate.readers import READERS, reader_class
    from curate.stage import STAGES, stage_class

    for title, registry, loader, attr in (("stages", STAGES, stage_class, "Params"),
                                         ("formats", READERS, reader_class, "Options")):
        console.print(f"[bold]{title}[/bold]")
        loaded: dict[str, type | Exception] = {}
        for name in registry:
            try:
                loaded[name] = loader(name)
            except (ConfigError, ImportError) as err:
                loaded[name] = err
        for name, cls in loaded.items():
            if isinstance(cls, Exception):
                console.print(f"  {name}: unavailable ({cls})", highlight=False)
                continue
            console.print(f"  [cyan]{name}[/cyan]  {escape(_description(name, cls, loaded))}", highlight=False)
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
    from curate.trainer.ablate_cli import ablate
    from curate.trainer.cli import train

    for command in (quality, detox, tokenizer, tokenize, mix, train, ablate, dashboard):
        main.add_command(command)
    main.add_command(card)


_register_commands_that_live_with_their_code()


if __name__ == "__main__":
    main()
