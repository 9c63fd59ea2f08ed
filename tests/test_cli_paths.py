"""Every path argument of the tokenizer, quality and detox commands, given a missing path, a path of the
wrong kind, or one whose content cannot be read: one clear error line naming it, exit 2 (usage) or 1
(failure), never a traceback."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from curate.cli import main


@pytest.fixture(scope="module")
def paths(tmp_path_factory, shared_data):
    """Real inputs that work, and broken ones of each kind."""
    root = tmp_path_factory.mktemp("paths")
    good_jsonl = root / "good.jsonl"
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        good_jsonl.write_text("".join(f.readlines()[:40]), encoding="utf-8")
    labelled = root / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n"
                                for i, t in enumerate(["good day to you", "you stupid idiot"] * 20)))
    corrupt_parquet = root / "corrupt.parquet"
    corrupt_parquet.write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    garbage = root / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 8)
    a_file = root / "a-file.txt"
    a_file.write_text("just a file\n")
    broken_gzip = root / "book.txt.gz"
    broken_gzip.write_bytes(gzip.compress(b"x")[:10] + bytes(range(256)) * 2)  # a gzip header, then no deflate stream
    folder = root / "folder"
    folder.mkdir()
    model = root / "tok"
    result = CliRunner().invoke(main, ["tokenizer", "train", "--input", str(shared_data / "books" / "gutenberg"),
                                       "--format", "txt", "--vocab-size", "400", "--sample-mb", "0.3",
                                       "--output", str(model)])
    assert result.exit_code == 0, result.output
    return {"jsonl": str(good_jsonl), "labelled": str(labelled), "parquet": str(corrupt_parquet),
            "garbage": str(garbage), "file": str(a_file), "broken_gzip": str(broken_gzip), "folder": str(folder),
            "missing": str(root / "no-such-path"), "model": str(model / "tokenizer.model"), "root": root}


# (command line with placeholders, expected exit code, a word the error must contain)
CASES = {
    # tokenizer train: --input, --output
    "train input missing": (["tokenizer", "train", "--input", "{missing}", "--output", "{out}"], 2, "no-such-path"),
    "train input wrong kind": (["tokenizer", "train", "--input", "{garbage}", "--output", "{out}"], 2, "format"),
    "train input unreadable": (["tokenizer", "train", "--input", "{parquet}", "--output", "{out}"], 1, "corrupt.parquet"),
    "train input empty folder": (["tokenizer", "train", "--input", "{folder}", "--output", "{out}"], 2, "folder"),
    "train output is a file": (["tokenizer", "train", "--input", "{jsonl}", "--output", "{file}"], 2, "a-file.txt"),
    # tokenizer extend: --base, --input, --english, --output
    "extend base missing": (["tokenizer", "extend", "--base", "{missing}", "--input", "{jsonl}", "--output", "{out}"],
                            2, "no-such-path"),
    "extend base is a folder": (["tokenizer", "extend", "--base", "{folder}", "--input", "{jsonl}", "--output",
                                 "{out}"], 2, "folder"),
    "extend base not a model": (["tokenizer", "extend", "--base", "{garbage}", "--input", "{jsonl}", "--output",
                                 "{out}"], 1, "garbage.bin"),
    "extend input missing": (["tokenizer", "extend", "--base", "{model}", "--input", "{missing}", "--output", "{out}"],
                             2, "no-such-path"),
    "extend input unreadable": (["tokenizer", "extend", "--base", "{model}", "--input", "{parquet}", "--output",
                                 "{out}"], 1, "corrupt.parquet"),
    "extend english missing": (["tokenizer", "extend", "--base", "{model}", "--input", "{jsonl}", "--english",
                                "{missing}", "--output", "{out}"], 2, "--english"),
    "extend output is a file": (["tokenizer", "extend", "--base", "{model}", "--input", "{jsonl}", "--output",
                                 "{file}"], 2, "a-file.txt"),
    # tokenizer export-hf: MODEL_DIR, --output
    "export-hf model missing": (["tokenizer", "export-hf", "{missing}"], 2, "no-such-path"),
    "export-hf folder without model": (["tokenizer", "export-hf", "{folder}"], 1, "tokenizer.model"),
    "export-hf not a model": (["tokenizer", "export-hf", "{garbage}", "--output", "{out}"], 1, "garbage.bin"),
    "export-hf output is a file": (["tokenizer", "export-hf", "{model}", "--output", "{file}"], 2, "a-file.txt"),
    # tokenize: --tokenizer, --input, --output
    "tokenize tokenizer missing": (["tokenize", "--tokenizer", "{missing}", "--input", "{jsonl}", "--output",
                                    "{out}"], 2, "no-such-path"),
    "tokenize tokenizer folder without model": (["tokenize", "--tokenizer", "{folder}", "--input", "{jsonl}",
                                                 "--output", "{out}"], 2, "tokenizer.model"),
    "tokenize tokenizer not a model": (["tokenize", "--tokenizer", "{garbage}", "--input", "{jsonl}", "--output",
                                        "{out}"], 1, "garbage.bin"),
    "tokenize input missing": (["tokenize", "--tokenizer", "{model}", "--input", "{missing}", "--output", "{out}"],
                               2, "no-such-path"),
    "tokenize output is a file": (["tokenize", "--tokenizer", "{model}", "--input", "{jsonl}", "--output", "{file}"],
                                  2, "a-file.txt"),
    # quality train: --positive, --negative, --output
    "quality positive missing": (["quality", "train", "--positive", "{missing}", "--negative", "{jsonl}", "--output",
                                  "{out}.bin"], 2, "no-such-path"),
    "quality positive wrong kind": (["quality", "train", "--positive", "{garbage}", "--negative", "{jsonl}",
                                     "--output", "{out}.bin"], 2, "garbage.bin"),
    "quality positive unreadable": (["quality", "train", "--positive", "{parquet}", "--negative", "{jsonl}",
                                     "--output", "{out}.bin"], 1, "corrupt.parquet"),
    "quality positive empty folder": (["quality", "train", "--positive", "{folder}", "--negative", "{jsonl}",
                                       "--output", "{out}.bin"], 2, "folder"),
    "quality negative missing": (["quality", "train", "--positive", "{jsonl}", "--negative", "{missing}", "--output",
                                  "{out}.bin"], 2, "no-such-path"),
    "quality output is a folder": (["quality", "train", "--positive", "{jsonl}", "--negative", "{jsonl}", "--output",
                                    "{folder}"], 2, "folder"),
    "quality output under a file": (["quality", "train", "--positive", "{jsonl}", "--negative", "{jsonl}",
                                     "--output", "{file}/m.bin"], 2, "a-file.txt"),
    # detox train: --input, --output
    "detox input missing": (["detox", "train", "--input", "{missing}", "--output", "{out}.bin"], 2, "no-such-path"),
    "detox input is a folder": (["detox", "train", "--input", "{folder}", "--output", "{out}.bin"], 2, "folder"),
    "detox input not labelled text": (["detox", "train", "--input", "{garbage}", "--output", "{out}.bin"], 2,
                                      "garbage.bin"),
    "detox input without labels": (["detox", "train", "--input", "{jsonl}", "--output", "{out}.bin"], 2, "label"),
    "detox output is a folder": (["detox", "train", "--input", "{labelled}", "--output", "{folder}"], 2, "folder"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_path_is_one_clear_line(case, paths, tmp_path):
    arguments, code, word = CASES[case]
    values = {**paths, "out": str(tmp_path / "out")}
    result = CliRunner().invoke(main, [a.format(**values) for a in arguments])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{case}: raised {type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.output.rstrip().splitlines()[-1] == errors[0], f"{case}: {result.output}"
    assert result.exit_code == code, f"{case}: exit {result.exit_code}: {result.output}"
    assert word in errors[0], f"{case}: {errors[0]}"


def test_broken_book_is_counted_not_fatal(paths, tmp_path):
    """A .txt.gz that is not gzip among good inputs: the reader drops it with its reason, the path says so."""
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "book.txt.gz").write_bytes(open(paths["broken_gzip"], "rb").read())
    (folder / "good.jsonl").write_text(open(paths["jsonl"], encoding="utf-8").read(), encoding="utf-8")
    result = CliRunner().invoke(main, ["quality", "train", "--positive", str(folder), "--negative", paths["labelled"],
                                       "--output", str(tmp_path / "m.bin")])
    assert "Traceback" not in result.output
    line = next(line for line in result.output.splitlines() if line.startswith("positive "))
    assert "40 documents from 2 file(s) (1 jsonl, 1 txt)" in line and "1 records dropped (unreadable" in line, line
