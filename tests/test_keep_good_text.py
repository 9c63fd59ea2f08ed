"""Good text kept, junk rejected, by the default per-document stages (issue #15), on real text.

The sets come from ``curate.benchmarks.keep_good_text`` (its docstring says how each is built;
running it prints the whole report with reasons); the tests use subsets to stay short. Goals:
at least 95% of clean English book chunks and of Chinese Wikipedia passages kept, at least 95%
of navigation junk rejected, and book inputs through the ``--format txt`` shortcut judged
without the web-page line rules.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate import stats
from curate.benchmarks import keep_good_text as bench
from curate.cli import main as cli
from curate.config import FORMAT_STAGES, from_shortcut
from curate.params import ConfigError


def kept_share(fmt: str, docs: list[str], overrides: dict | None = None) -> tuple[float, Counter]:
    reasons = bench.first_reasons(bench.per_document_stages(fmt, overrides), docs)
    return sum(r is None for r in reasons) / len(docs), Counter(reasons)


def test_english_book_chunks_are_kept(shared_data):
    docs = bench.book_chunks(shared_data)[::3]  # 352 of the 1,056 chunks, every novel
    assert len(docs) > 300
    share, reasons = kept_share("jsonl", docs)
    assert share >= 0.95, reasons
    # datatrove's definitions (punctuation marks as words, a sentence end only as the last
    # character) lose a third of them: what the published definitions fix
    before, reasons = kept_share("jsonl", docs, bench.BASELINE_PARAMS)
    assert before < 0.75 and reasons["gopher_quality:alpha_words"] > 0 and reasons["c4:min_sentences"] > 0


def test_chinese_wikipedia_passages_are_kept(shared_data):
    docs = bench.chinese_passages(shared_data)
    share, reasons = kept_share("jsonl", docs)
    assert len(docs) == 552 and share >= 0.95, reasons


def test_hard_wrapped_books_are_kept_by_the_txt_defaults(shared_data):
    docs = bench.book_chunks(shared_data, wrapped=True)[1::3]
    share, reasons = kept_share("txt", docs)
    assert share >= 0.95, reasons
    # the web stages' line rules would still drop many of them: print lines end mid-sentence
    web, reasons = kept_share("warc", docs)
    assert web < 0.8 and reasons["c4:min_sentences"] > 0


def test_navigation_junk_from_real_pages_is_rejected(shared_data):
    docs = bench.boilerplate_pages(shared_data)
    assert len(docs) >= 100
    share, reasons = kept_share("warc", docs)
    assert 1 - share >= 0.95, reasons
    # and by the quality rules themselves, not only by language ID
    share, reasons = kept_share("warc", docs, {"langid": {"languages": "all"}})
    assert 1 - share >= 0.95, reasons


def test_generated_junk_is_rejected(shared_data):
    docs = bench.generated_junk(shared_data)
    for overrides in (None, {"langid": {"languages": "all"}}):
        reasons = bench.first_reasons(bench.per_document_stages("warc", overrides), docs)
        kept = [d[:80] for d, r in zip(docs, reasons) if r is None]
        assert len(kept) <= 0.05 * len(docs), kept


def test_boilerplate_lines_leave_out_the_main_text():
    html = ("<html><body><nav><ul><li>Home</li><li>World news</li></ul></nav>"
            "<article><p>The council approved the new budget on Tuesday after a long debate.</p>"
            "<p>It takes effect in March.</p></article>"
            "<footer><p>© 2024 Example Media. All rights reserved.</p></footer></body></html>")
    main = "The council approved the new budget on Tuesday after a long debate.\nIt takes effect in March."
    assert bench.boilerplate_lines(html, main) == ["Home", "World news", "© 2024 Example Media. All rights reserved."]


# --- the --input/--format shortcut ---------------------------------------------------------------

def test_shortcut_stages_per_format(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text("It was a bright cold day in April.\n", encoding="utf-8")
    names = lambda config: [s.name for s in config.stages]  # noqa: E731
    books = from_shortcut([str(book)], "txt", None, None, [])
    assert names(books) == FORMAT_STAGES["txt"]
    assert "c4" not in names(books) and "fineweb" not in names(books) and "gopher_quality" in names(books)
    assert books.stages[names(books).index("gopher_quality")].params == {"max_doc_words": 1_000_000}
    # asked for, they run; --set reaches a stage only when it is in the pipeline
    asked = from_shortcut([str(book)], "txt", None, ["length", "c4", "fineweb"], ["c4.min_sentences=3"])
    assert names(asked) == ["length", "c4", "fineweb"] and asked.stages[1].params == {"min_sentences": 3}
    with pytest.raises(ConfigError) as err:
        from_shortcut([str(book)], "txt", None, None, ["c4.min_sentences=3"])
    assert "not in this pipeline" in str(err.value)
    page = tmp_path / "in.jsonl"
    page.write_text('{"text": "hello"}\n', encoding="utf-8")
    web = from_shortcut([str(page)], "jsonl", None, None, [])
    assert {"c4", "fineweb", "gopher_quality"} <= set(names(web)) and "code_quality" not in names(web)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("x = 1\n", encoding="utf-8")
    code = from_shortcut([str(repo)], "code", None, None, [])
    assert "langid" not in names(code) and code.stages[names(code).index("code_quality")].sources == ["code"]


def test_run_help_lists_the_default_stages_of_every_format():
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0
    for fmt, stages in FORMAT_STAGES.items():
        assert ", ".join(stages) in result.output, fmt
        assert fmt in result.output


def test_books_through_the_cli_shortcut_are_all_kept(shared_data, tmp_path):
    out = tmp_path / "out"
    cli_path = str(Path(sys.executable).parent / "curate")
    done = subprocess.run([cli_path, "run", "--input", str(shared_data / "books" / "gutenberg"), "--format", "txt",
                           "--output", str(out), "--workers", "1", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    con = stats.connect(str(out))
    assert con.execute("SELECT count(*) FROM docs").fetchone()[0] == 6  # whole novels, over 100,000 words too
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
    ran = {row[0] for row in con.execute("SELECT DISTINCT stage FROM stats").fetchall()}
    assert {"langid", "gopher_quality", "gopher_repetition"} <= ran and not {"c4", "fineweb"} & ran
