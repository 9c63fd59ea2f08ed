"""The demo's last step: the report of everything the demo made (run, tokens, mixture, training)."""

from __future__ import annotations

import os

#: The demo's folders the report reads when they exist (``curate demo`` builds them in this order).
TOKENS, MIXTURE, TRAIN = "tokens", "mix", "train"


def report_step(directory: str, output: str, console) -> int:
    """Write ``DIR/report.html`` and print its path; returns the exit code."""
    from curate.dashboards.report import build_report, describe
    from curate.params import ConfigError

    tokens, mixture, train = (os.path.join(directory, name) for name in (TOKENS, MIXTURE, TRAIN))
    command = f"curate dashboard {output}"
    options = {}
    if os.path.isdir(os.path.join(tokens, "stats")):
        options["tokens"], command = tokens, command + f" --tokens {tokens}"
    if os.path.isfile(os.path.join(mixture, "mixture.json")):
        options["mixture"], command = mixture, command + f" --mixture {mixture}"
    if os.path.isfile(os.path.join(train, "metrics.jsonl")):
        options["train"], command = [train], command + f" --train {train}"
    report = os.path.join(directory, "report.html")
    console.rule(f"[bold]{command} --output {report}")
    try:
        built = build_report(output, report, **options)
    except ConfigError as err:
        console.print(f"[red]report failed[/red] {err}")
        return 1
    console.print(f"  {describe(built)}")
    console.print(f"report: {os.path.abspath(report)} (open it in a browser; no server needed)")
    return 0
