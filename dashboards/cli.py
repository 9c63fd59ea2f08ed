"""``curate dashboard``: one self-contained HTML report of a run, its tokens, mixture and training."""

from __future__ import annotations

import os
import sys

import click

from curate.params import ConfigError, build_params
from curate.storage import basename, is_remote


@click.command()
@click.argument("output", metavar="OUT", type=click.Path(file_okay=False))
@click.option("--tokens", "-t", type=click.Path(file_okay=False), help="A token folder (`curate tokenize --output`).")
@click.option("--mixture", "-m", type=click.Path(file_okay=False), help="A mixture folder (`curate mix`).")
@click.option("--train", "train", multiple=True, type=click.Path(file_okay=False),
              help="A training run (`curate train`) or an ablation folder of runs; repeat to compare runs.")
@click.option("--output", "-o", "report", type=click.Path(dir_okay=False),
              help="The HTML file to write (default: OUT/report.html; for OUT in an object store, "
                   "NAME-report.html in the current folder).")
@click.option("--serve", is_flag=True, help="Serve the report on a local web server, refreshed while the run goes on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --serve: the address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="With --serve: the port (0: any free one).")
@click.option("--samples", default=5, show_default=True, type=int, help="Sample documents per reject reason.")
@click.option("--sample-chars", default=600, show_default=True, type=int, help="Characters shown of a sample's text.")
@click.option("--bins", default=40, show_default=True, type=int, help="Bins of each signal histogram.")
def dashboard(output, tokens, mixture, train, report, serve, host, port, samples, sample_chars, bins):
    """Draw OUT (a `curate run` output) as one HTML file that opens from disk, no server or network needed.

    \b
    Panels: the funnel per source and stage, reject reasons, languages, every signal with the run's
    thresholds, duplicate clusters, PII placeholders, sample documents per reject reason; with
    --tokens, --mixture and --train also tokens per source, the mixture and the training curves.

    \b
    curate dashboard out/ --tokens tokens/ --output report.html
    curate dashboard out/ --serve              # http://127.0.0.1:8765, refreshes while the run goes on
    curate dashboard s3://bucket/run/          # read in place; writes ./run-report.html
    """
    import duckdb

    from curate.cli import EXIT_FAILED, EXIT_USAGE, console, err_console
    from curate.dashboards.inputs import open_run
    from curate.dashboards.report import ReportParams, build_report, describe

    params = build_params(ReportParams, {"samples": samples, "sample_chars": sample_chars, "bins": bins},
                          where="dashboard")
    if serve:
        open_run(output, allow_empty=True)  # a run that has not finished a task yet is served as "waiting"
        sys.exit(_serve(output, tokens, mixture, list(train), params, host, port))
    if report and is_remote(report):
        raise ConfigError("the report is written to a local file; give a local path (and copy it up yourself if "
                          "it should live in the store)", file=report, key="--output")
    if report is None:  # beside the run; a run in an object store: here, named after it
        report = (f"{basename(output)}-report.html" if is_remote(output) else os.path.join(output, "report.html"))
    try:
        built = build_report(output, report, tokens=tokens, mixture=mixture, train=list(train), params=params)
    except duckdb.Error as err:
        err_console.print(f"[bold red]error[/bold red] {output}: cannot read the run's Parquet: "
                          f"{str(err).splitlines()[0]}")
        sys.exit(EXIT_USAGE)
    except OSError as err:
        err_console.print(f"[bold red]error[/bold red] {report}: cannot write the report ({err.strerror or err})")
        sys.exit(EXIT_FAILED)
    console.print(f"[bold]curate dashboard[/bold] {describe(built)}")
    if built.partial:
        err_console.print(f"[bold yellow]partial[/bold yellow] {output}: the run is not finished; the report shows "
                          "the tasks finished so far")
    shown = os.path.abspath(report) if is_remote(output) else report  # not beside the run: say where
    console.print(f"wrote {shown} ({os.path.getsize(report) / 1e6:.1f} MB; opens from disk)")


def _serve(output, tokens, mixture, train, params, host, port) -> int:
    from curate.cli import console, err_console
    from curate.dashboards.serve import LOOPBACK, ReportServer, make_server

    if host not in LOOPBACK:
        err_console.print(f"[bold yellow]warning[/bold yellow] serving on {host}: anyone who can reach this machine "
                          "can read the report (crawled text, file paths)")
    try:
        server = make_server(ReportServer(output, tokens=tokens, mixture=mixture, train=train, params=params),
                         host, port)
    except OSError as err:
        err_console.print(f"[bold red]error[/bold red] cannot listen on {host}:{port} ({err.strerror or err})")
        return 2
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    console.print(f"[bold]curate dashboard[/bold] serving {output} at http://{shown}:{bound_port}/ "
                  "(refreshes while the run goes on; Ctrl-C stops)", soft_wrap=True)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
