"""`curate dashboard`: the report of real runs, loaded in a real headless Chromium.

Real runs: ``curate demo`` (which writes the report itself, with its tokens and mixture), the shared
demo pipeline run (``demo_output`` in conftest.py), and a small ``curate run`` over JSONL documents
whose text, URL and file name carry script payloads. The
browser is Debian's chromium (``tests/setup_browser.sh``, run by ``make test``), driven over the
DevTools protocol; these tests skip only where it is not installed.

The mixture panel is checked on the demo's real ``curate mix`` output; the training panel with runs
written in the format INTERFACES.md agrees on (``config.json`` + ``metrics.jsonl``, as
``trainer/metrics.py`` writes them): three runs side by side, two of them in an ablation folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate import stats
from curate.cli import main
from curate.dashboards.browser import Browser, chromium_path
from curate.dashboards.report import ReportParams, build, build_report

CLI = str(Path(sys.executable).parent / "curate")
DRAWN = "document.body && document.body.hasAttribute('data-charts-drawn')"
PAYLOADS = {
    "script": "<script>window.__pwned = 'script'</script>",
    "img": "\"><img src=x onerror=\"window.__pwned='img'\">",
    "quote": "'><svg onload=window.__pwned='svg'>",
}


# ---- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`curate demo` as a user runs it; it writes DIR/report.html and prints the path."""
    cwd = tmp_path_factory.mktemp("dashboard-demo")
    done = subprocess.run([CLI, "demo", "curate-demo", "--workers", "2"], cwd=cwd, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd / "curate-demo", done.stdout


@pytest.fixture(scope="module")
def payload_run(tmp_path_factory):
    """A real run whose documents (text, URL, file name) carry script payloads; every one is rejected by
    langid (only French allowed), so every payload shows up among the sample documents."""
    root = tmp_path_factory.mktemp("dashboard-payload")
    raw = root / "raw"
    raw.mkdir()
    english = ("The river ran past the old mill where the miller kept his books and counted the sacks of "
               "grain that came down from the hills every autumn before the first snow. ")
    docs = [
        {"id": "doc-script", "text": english + PAYLOADS["script"] * 3, "url": "https://example.org/a?q=<script>"},
        {"id": "doc-img", "text": english + PAYLOADS["img"],
         "url": "https://example.org/\"><img src=x onerror=\"window.__pwned='url'\">"},
        {"id": "doc-js", "text": english + " see the link", "url": "javascript:window.__pwned='href'"},
        {"id": "doc-long", "text": english * 60 + PAYLOADS["quote"], "url": "https://example.org/long"},
    ]
    name = "crawl\"><img src=x onerror=window.__pwned='file'>.jsonl"
    with open(raw / name, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")
    out = root / "out"
    done = subprocess.run([CLI, "run", "--input", str(raw), "--format", "jsonl", "--source", "web<b>",
                           "--stages", "length,langid", "--set", "langid.languages=[fr]",
                           "--set", "langid.min_score=0.3", "--output", str(out), "--workers", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.skip("chromium is not installed (bash tests/setup_browser.sh installs Debian's package)")
    with Browser(width=1400, height=1000, timeout=90) as b:
        yield b


def _load(browser: Browser, path: Path):
    return browser.open(path.resolve().as_uri(), ready=DRAWN)


def _train_run(folder: Path, *, steps: int, loss0: float, mixture: str | None = None, done: bool = True) -> Path:
    """A training run folder in the agreed format: config.json, metrics.jsonl, done.json."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"mixture": mixture, "seq_len": 64, "peak_tflops": 1.0}))
    with open(folder / "metrics.jsonl", "w", encoding="utf-8") as f:
        for step in range(1, steps + 1):
            f.write(json.dumps({"kind": "train", "step": step, "tokens": step * 4096, "loss": loss0 / (1 + 0.1 * step),
                                "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 20000 + step, "mfu": 0.3,
                                "mem_gb": 1.0, "time": 1.7e9 + step}) + "\n")
            if step % 5 == 0:
                for component in ("all", "web", "books<i>"):
                    f.write(json.dumps({"kind": "val", "step": step, "tokens": step * 4096, "component": component,
                                        "loss": loss0 / (1 + 0.08 * step)}) + "\n")
        f.write('{"kind": "train", "step": 99')  # a line still being written: left for the next refresh
    if done:
        (folder / "done.json").write_text("{}")
    return folder


# ---- the demo's report ------------------------------------------------------------------------------------

def test_demo_writes_the_report_and_prints_its_path(demo):
    directory, printed = demo
    report = directory / "report.html"
    assert report.is_file()
    match = re.search(r"report: (\S+\.html)", " ".join(printed.split()))
    assert match and Path(match.group(1)) == report.resolve()


def test_report_is_self_contained(demo):
    html = (demo[0] / "report.html").read_text(encoding="utf-8")
    assert "Plotly" in html and "Content-Security-Policy" in html
    # nothing is fetched: no external script, style, font or image
    assert not re.search(r"<(script|img|iframe)[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=", html)
    import html as html_module

    assert "default-src 'none'" in html_module.unescape(html)


def test_demo_report_draws_every_panel_without_console_errors(demo, browser, tmp_path):
    directory, _ = demo
    log = _load(browser, directory / "report.html")
    assert log.errors == []
    panels = browser.evaluate("document.body.getAttribute('data-panels')").split()
    expected = {"funnel", "reasons", "languages", "signals", "dedup", "pii", "tokens", "samples"}
    if (directory / "mix" / "mixture.json").is_file():  # the demo runs `curate mix`
        expected.add("mixture")
    if (directory / "train" / "metrics.jsonl").is_file():  # ... and `curate train`
        expected.add("training")
    assert expected <= set(panels)
    if {"mixture", "training"} <= set(panels):  # the real training run names the real mixture
        assert "epochs elapsed: train" in browser.evaluate("document.querySelector('#mixture table').innerText")
    for panel in panels:
        charts = int(browser.evaluate(f"document.getElementById('{panel}').getAttribute('data-charts')"))
        drawn = browser.evaluate(f"document.querySelectorAll('#{panel} .js-plotly-plot .main-svg').length")
        marks = browser.evaluate(
            f"document.querySelectorAll('#{panel} .js-plotly-plot g.trace, #{panel} .js-plotly-plot g.point').length")
        assert drawn >= charts, panel
        if charts:
            assert marks > 0, f"{panel}: charts without a single drawn trace"
    assert int(browser.evaluate("document.body.getAttribute('data-charts-drawn')")) == \
        browser.evaluate("document.querySelectorAll('div[data-figure]').length")
    shot = browser.screenshot(str(tmp_path / "report.png"))
    assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(shot).stat().st_size > 20_000


def test_thresholds_drawn_are_the_runs_own(demo_output, browser, tmp_path):
    report = tmp_path / "report.html"
    build_report(str(demo_output), str(report), params=ReportParams(samples=0))
    _load(browser, report)
    labels = browser.evaluate("[...document.querySelectorAll('#signals .annotation-text')].map(e => e.textContent)")
    # the demo's langid has no min_score: the default of the stage's Params is what the run used
    assert "min_score = 0.65" in labels
    assert "min_doc_words = 50" in labels


def test_histograms_count_every_document_that_reached_the_stage(demo_output):
    out = demo_output
    report = build(str(out), params=ReportParams(samples=0))
    from curate.dashboards import queries
    from curate.dashboards.signals import signal_table

    con = stats.connect(str(out))
    hists = {h.signal.column: h for h in queries.signal_histograms(con, signal_table(), 20, {})}
    assert "lang_score" in hists and "gopher_words" in hists
    for column, hist in hists.items():
        kept = con.execute(f'SELECT count("{column}") FROM docs').fetchone()[0]
        here, later = con.execute(
            f"SELECT count(\"{column}\") FILTER (WHERE reject_stage = ?), count(\"{column}\") FILTER (WHERE reject_stage <> ?) "
            "FROM rejects", [hist.signal.stage, hist.signal.stage]).fetchone()
        assert sum(hist.counts["kept"]) == kept, column
        assert sum(hist.counts["rejected here"]) == here, column
        assert sum(hist.counts["rejected later"]) == later, column
    assert "samples" not in report.panels
    # the languages, clusters and PII counts of the same single pass equal their own GROUP BY queries
    sources = [r[0] for r in con.execute("SELECT DISTINCT source FROM stats").fetchall()]
    found = queries.profile(con, signal_table(), 20, {}, sources)
    assert sorted(found.languages) == sorted((s, lang, int(k), int(r)) for s, lang, k, r, _ in stats.by_language(con))
    assert found.clusters == [tuple(r) for r in con.execute(
        "SELECT size, count(*) // size, count(*) FROM (SELECT dup_cluster_size AS size FROM docs UNION ALL "
        "SELECT dup_cluster_size FROM rejects) WHERE size > 1 GROUP BY size ORDER BY size").fetchall()]
    assert found.clusters, "the demo plants duplicates"
    pii = {(s, t): n for s, t, n in found.pii}
    for t in queries.PII_TYPES:
        for source, total in con.execute(f"SELECT source, sum(pii_{t}) FROM docs GROUP BY source").fetchall():
            assert pii.get((source, t), 0) == (total or 0), (source, t)


def test_samples_show_each_reject_reason(demo_output, browser, tmp_path):
    report = tmp_path / "report.html"
    build_report(str(demo_output), str(report))
    log = _load(browser, report)
    assert log.errors == []
    shown = set(browser.evaluate("[...document.querySelectorAll('details.reason')].map(e => e.dataset.reason)"))
    con = stats.connect(str(demo_output))
    reasons = {r[0] for r in con.execute("SELECT DISTINCT reject_reason FROM rejects").fetchall()}
    assert reasons and shown == reasons
    assert browser.evaluate("document.querySelectorAll('.sample pre.text').length") >= len(reasons)


# ---- escaping ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("csp", [False, True], ids=["escaping-alone", "with-csp"])
def test_payloads_in_text_url_and_file_name_never_run(payload_run, browser, tmp_path, csp):
    report = tmp_path / "report.html"
    build_report(str(payload_run), str(report), params=ReportParams(csp=csp, sample_chars=400))
    html = report.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    log = _load(browser, report)
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.querySelectorAll('img, svg [onload], [onerror]').length") == 0
    links = browser.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))")
    assert links and all(re.match(r"(https?:|#)", href) for href in links), links
    # the payloads are shown as the text they are
    text = browser.evaluate("document.getElementById('samples').innerText")
    assert PAYLOADS["script"] in text and "onerror=\"window.__pwned='img'\"" in text
    assert "javascript:window.__pwned='href'" in text and "onerror=window.__pwned='file'>.jsonl" in text
    # the source name (a user's string inside the charts) is drawn as text too
    assert "web<b>" in browser.evaluate("document.getElementById('funnel').innerText")
    # long texts are cut
    assert "cut:" in text and PAYLOADS["quote"] not in text
    assert log.errors == []


def test_threshold_lines_follow_the_config(payload_run, browser, tmp_path):
    report = tmp_path / "report.html"
    build_report(str(payload_run), str(report))
    _load(browser, report)
    labels = browser.evaluate("[...document.querySelectorAll('#signals .annotation-text')].map(e => e.textContent)")
    assert "min_score = 0.3" in labels


# ---- partial runs, bad input ------------------------------------------------------------------------------

def _partial_copy(out: Path, target: Path, keep: int) -> Path:
    """The run as it looks mid-way: only ``keep`` tasks finished (a task is done when its stats file exists)."""
    shutil.copytree(out, target)
    finished = sorted((target / "stats").glob("*.parquet"))
    for extra in finished[keep:]:
        extra.unlink()
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["complete"] = False
    manifest.pop("finished", None)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_unfinished_run_is_reported_as_partial(demo_output, tmp_path):
    partial = _partial_copy(demo_output, tmp_path / "partial", keep=2)
    result = CliRunner().invoke(main, ["dashboard", str(partial), "--output", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "partial" in result.output.lower()
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "partial: 2 task(s) finished so far" in html and "data-complete='false'" in html


@pytest.mark.parametrize("case", ["missing", "not-a-run", "no-stats", "empty-stats", "bad-manifest", "bad-tokens",
                                  "bad-mixture", "bad-train", "bad-metrics", "bad-bins"])
def test_bad_input_is_one_line_and_exit_2(demo_output, tmp_path, case):
    out = demo_output
    args = ["dashboard", str(out), "--output", str(tmp_path / "r.html")]
    if case == "missing":
        args[1] = str(tmp_path / "nope")
    elif case == "not-a-run":
        args[1] = str(demo_output.parent / "raw")
    elif case in ("no-stats", "empty-stats", "bad-manifest"):
        broken = tmp_path / "run"
        broken.mkdir()
        (broken / "manifest.json").write_text('{"config": {"stages": []}}' if case != "bad-manifest" else "{oops")
        if case == "empty-stats":
            (broken / "stats").mkdir()
        args[1] = str(broken)
    elif case == "bad-tokens":
        args += ["--tokens", str(demo_output.parent / "raw")]
    elif case == "bad-mixture":
        args += ["--mixture", str(demo_output / "stats")]
    elif case == "bad-train":
        (tmp_path / "empty").mkdir()
        args += ["--train", str(tmp_path / "empty")]
    elif case == "bad-metrics":
        run = _train_run(tmp_path / "train", steps=3, loss0=5.0)
        with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write("\nnot json\n")
        args += ["--train", str(run)]
    elif case == "bad-bins":
        args += ["--bins", "1"]
    result = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith("config error") and ("/" in message or "bins" in message), message
    assert not (tmp_path / "r.html").exists()


# ---- mixture and training ---------------------------------------------------------------------------------

def test_training_runs_side_by_side(demo_output, browser, tmp_path):
    first = _train_run(tmp_path / "runs" / "baseline", steps=30, loss0=6.0)
    ablation = tmp_path / "ablation"
    _train_run(ablation / "more-code-seed0", steps=20, loss0=6.5, done=False)
    _train_run(ablation / "more-code-seed1", steps=20, loss0=6.4, done=False)
    report = tmp_path / "report.html"
    built = build_report(str(demo_output), str(report), train=[str(first), str(ablation)],
                         params=ReportParams(samples=0))
    assert "training" in built.panels and "mixture" not in built.panels and "tokens" not in built.panels
    log = _load(browser, report)
    assert log.errors == []
    # one line per run in the train-loss chart; the validation chart has a small chart per component
    loss_traces = browser.evaluate("document.querySelectorAll('#training .js-plotly-plot')[0]"
                                   ".querySelectorAll('.scatterlayer g.trace').length")
    assert loss_traces == 3
    names = browser.evaluate("[...document.querySelectorAll('#training .legendtext')].map(e => e.textContent)")
    assert {"baseline", "more-code-seed0", "more-code-seed1"} <= set(names)
    titles = browser.evaluate("[...document.querySelectorAll('#training .annotation-text')].map(e => e.textContent)")
    assert {"all", "web", "books<i>"} <= set(titles)
    # the last line, still being written, is left out: 30 steps drawn, not 31
    points = browser.evaluate("document.querySelectorAll('#training .js-plotly-plot')[0].data[0].x.length")
    assert points == 30


def test_mixture_panel_with_epochs_elapsed(demo, browser, tmp_path):
    directory, _ = demo
    mix = directory / "mix"
    assert (mix / "mixture.json").is_file(), "the demo builds a mixture (step 6)"
    meta = json.loads((mix / "mixture.json").read_text())
    steps = 10
    run = _train_run(tmp_path / "run", steps=steps, loss0=6.0, mixture=str(mix))
    report = tmp_path / "report.html"
    built = build_report(str(directory / "out"), str(report), mixture=str(mix), train=[str(run)],
                         params=ReportParams(samples=0))
    assert "mixture" in built.panels
    log = _load(browser, report)
    assert log.errors == []
    rows = browser.evaluate("[...document.querySelectorAll('#mixture table tr')].map(r => [...r.cells].map(c => c.innerText))")
    assert rows[0][-1] == "epochs elapsed: run"
    components = {c["name"]: c for c in meta["components"]}
    assert {r[0] for r in rows[1:]} == set(components)
    share = min(1.0, steps * 4096 / meta["tokens"])
    for r in rows[1:]:
        assert float(r[-1]) == pytest.approx(float(r[6]) * share, rel=0.02, abs=2e-3)


# ---- serving ----------------------------------------------------------------------------------------------

def test_serve_binds_localhost_and_refreshes_as_the_run_goes_on(demo_output, browser, tmp_path):
    out = demo_output
    partial = _partial_copy(out, tmp_path / "partial", keep=0)  # started, no task finished yet
    finished = sorted((out / "stats").glob("*.parquet"))
    server = subprocess.Popen([CLI, "dashboard", str(partial), "--serve", "--port", "0", "--samples", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        match = re.search(r"http://([\d.]+):(\d+)/", line)
        assert match, line + (server.stderr.read() if server.poll() is not None else "")
        assert match.group(1) == "127.0.0.1"
        url = match.group(0)

        def version() -> str:
            with urllib.request.urlopen(url + "version", timeout=30) as r:
                return r.read().decode()

        # nothing finished yet: a page that waits, and polls
        log = browser.open(url, ready="document.body && document.body.hasAttribute('data-version')")
        assert "No report yet" in browser.evaluate("document.body.innerText") and log.errors == []
        shown = version()
        for step, batch in enumerate((finished[:1], finished[1:])):  # the run goes on: tasks finish
            for path in batch:
                shutil.copy(path, partial / "stats" / path.name)
            assert version() != shown
            browser.wait_for(f"document.body && document.body.getAttribute('data-version') !== '{shown}' "
                             "&& document.body.hasAttribute('data-charts-drawn')")
            shown = browser.evaluate("document.body.getAttribute('data-version')")
            done = 1 if step == 0 else len(finished)
            assert f"{done} task(s) finished" in browser.evaluate("document.querySelector('header').innerText")
        assert browser.log.errors == []
    finally:
        server.terminate()
        server.wait(20)
