"""HuggingFace export: transformers loads the files; which runtime gives SentencePiece's exact ids."""

from __future__ import annotations

import glob
import json
import os

import pytest
import sentencepiece as spm
from click.testing import CliRunner

from curate.tokenizers.cli import tokenizer as tokenizer_cli
from curate.tokenizers.corpus import input_files
from curate.tokenizers.export_hf import agreement, import_transformers, transformers_installed
from curate.tokenizers.extend import ExtendParams, extend_tokenizer
from curate.tokenizers.train import TrainParams, train_tokenizer

pytestmark = pytest.mark.skipif(not transformers_installed(), reason="transformers is not installed")


@pytest.fixture(scope="module")
def exported(shared_data, tmp_path_factory) -> str:
    """An English base extended with Chinese (a merged vocabulary, where converters are known to slip), exported."""
    root = tmp_path_factory.mktemp("hf")
    train_tokenizer(input_files([str(shared_data / "books" / "gutenberg")], "txt"), str(root / "base"),
                    TrainParams(vocab_size=1500, heldout_fraction=0.0))
    chinese = shared_data / "chinese"
    extend_tokenizer(str(root / "base" / "tokenizer.model"),
                     input_files([str(chinese / "gutenberg-zh" / "pg23962-0.txt"), str(chinese / "cmrc2018-wikipedia")]),
                     str(root / "ext"), ExtendParams(vocab_size=8000, heldout_fraction=0.0))
    result = CliRunner().invoke(tokenizer_cli, ["export-hf", str(root / "ext"), "--output", str(root / "out")])
    assert result.exit_code == 0, result.output
    assert "tokenizer.json" in json.loads(result.stdout)["files"]  # stderr may carry transformers warnings
    return str(root / "out")


def _real_text(shared_data) -> tuple[list[str], list[str]]:
    chinese = shared_data / "chinese"
    with open(chinese / "gutenberg-zh" / "pg27166-0.txt", encoding="utf-8") as f:  # not used in training
        zh = f.read().split("\n")
    with open(chinese / "ud-chinese-gsdsimp" / "sentences.jsonl", encoding="utf-8") as f:
        zh += [json.loads(line)["text"] for line in f]
    en = []
    for path in sorted(glob.glob(str(shared_data / "books" / "gutenberg" / "*-0.txt"))):
        with open(path, encoding="utf-8-sig") as f:
            en += f.read().replace("\r\n", "\n").split("\n")[:1500]
    with open(shared_data / "langid" / "lingua" / "sentences" / "en.txt", encoding="utf-8") as f:
        en += f.read().split("\n")
    return [t for t in zh if t.strip()], [t for t in en if t.strip()]


def test_auto_tokenizer_is_exact_on_chinese_and_english(exported, shared_data):
    zh, en = _real_text(shared_data)
    assert any(t.startswith((" ", "\u3000")) for t in zh)  # indented lines: where converters drop a space
    for texts in (zh, en):
        result = agreement(exported, texts)
        assert result["class"] == "TokenizersBackend" or result["class"].endswith("Fast")
        assert result["lines"] == len(texts)
        assert result["identical_ids"] == 1.0
        assert result["lossless_decode"] == 1.0
    hf = import_transformers().AutoTokenizer.from_pretrained(exported)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(exported, "tokenizer.model"))
    assert hf.encode("hello")[0] == sp.bos_id()  # a BOS in front, as LLaMA's
    assert hf.eos_token == "</s>" and hf.pad_token == "<pad>"


def test_llama_tokenizer_loads_and_agrees_on_lines_without_leading_space(exported, shared_data):
    zh, en = _real_text(shared_data)
    tokenizer = import_transformers().LlamaTokenizer.from_pretrained(exported)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(exported, "tokenizer.model"))
    assert len(tokenizer) == sp.get_piece_size()
    plain = [t for t in zh + en if not t[0].isspace()]
    got = [tokenizer.encode(t, add_special_tokens=False) for t in plain]
    assert got == sp.encode(plain)
