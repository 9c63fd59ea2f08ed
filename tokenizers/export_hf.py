"""Export a trained tokenizer for HuggingFace transformers.

The folder gets ``tokenizer.model`` (the SentencePiece model: the reference
runtime), ``tokenizer_config.json``, ``special_tokens_map.json`` and, when
transformers is installed, a ``tokenizer.json`` made by its converter with the
space handling fixed to match SentencePiece.

* ``AutoTokenizer.from_pretrained(DIR)`` loads that ``tokenizer.json`` as is
  (``tokenizer_class`` is ``PreTrainedTokenizerFast``): the same ids as
  SentencePiece on every text we tested.
* ``LlamaTokenizer.from_pretrained(DIR)`` loads too, but transformers 5 rebuilds
  its pre-tokenizer (``Metaspace``), which drops one space from a text that
  starts with spaces: ids differ on those texts only.

``agreement`` measures this on given text.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys

import sentencepiece as spm


def transformers_installed() -> bool:
    return importlib.util.find_spec("transformers") is not None


@contextlib.contextmanager
def checkout_off_path():
    """Keep this checkout off ``sys.path`` while importing HuggingFace's ``tokenizers``.

    ``python -m ...`` run from a checkout puts the checkout first on
    ``sys.path``, where the ``tokenizers/`` folder (this package's source,
    importable only as ``curate.tokenizers``) would shadow HuggingFace's.
    """
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cached = sys.modules.get("tokenizers")
    if cached is not None and os.path.abspath(getattr(cached, "__file__", None) or "").startswith(checkout + os.sep):
        del sys.modules["tokenizers"]
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != checkout]
    try:
        yield
    finally:
        sys.path[:] = saved


def import_transformers():
    """Import transformers (and with it HuggingFace's ``tokenizers``), whatever the working directory."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "PyTorch was not found" advice: only tokenizers are used
    with checkout_off_path():
        import transformers
        from transformers import AutoTokenizer, LlamaTokenizer  # noqa: F401  (imports tokenizers now)
    return transformers


def export_hf(model_dir: str, output: str | None = None, *, model_max_length: int = 4096) -> dict:
    """Write the HuggingFace files for ``model_dir/tokenizer.model`` into ``output`` (default: ``model_dir``)."""
    model_path = os.path.join(model_dir, "tokenizer.model") if os.path.isdir(model_dir) else model_dir
    if not os.path.isfile(model_path):
        raise ValueError(f"{model_dir}: no tokenizer.model")
    output = output or (model_dir if os.path.isdir(model_dir) else os.path.dirname(model_path))
    os.makedirs(output, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=model_path)
    target = os.path.join(output, "tokenizer.model")
    if os.path.abspath(target) != os.path.abspath(model_path):
        shutil.copyfile(model_path, target)

    def piece(i: int) -> str | None:
        return sp.id_to_piece(i) if i >= 0 else None

    specials = {"bos_token": piece(sp.bos_id()), "eos_token": piece(sp.eos_id()), "unk_token": piece(sp.unk_id()),
                "pad_token": piece(sp.pad_id())}
    specials = {k: v for k, v in specials.items() if v is not None}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": sp.bos_id() >= 0,
        "add_eos_token": False,
        "add_prefix_space": None,
        "legacy": True,  # SentencePiece's own handling of the first word and of text after special tokens
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "sp_model_kwargs": {},
        **specials,
    }
    _write_json(config, os.path.join(output, "tokenizer_config.json"))
    _write_json(specials, os.path.join(output, "special_tokens_map.json"))
    written = ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"]
    if not transformers_installed():
        return {"output": output, "files": written, "tokenizer_json": False}
    LlamaTokenizer = import_transformers().LlamaTokenizer
    tokenizer_json = os.path.join(output, "tokenizer.json")
    if os.path.exists(tokenizer_json):  # a stale one would be loaded instead of converting tokenizer.model
        os.remove(tokenizer_json)
    tokenizer = LlamaTokenizer.from_pretrained(output)
    tokenizer.backend_tokenizer.save(tokenizer_json)
    _match_sentencepiece_spaces(tokenizer_json, sp)
    written.append("tokenizer.json")
    return {"output": output, "files": written, "tokenizer_json": True}


def agreement(output: str, texts: list[str], tokenizer_class: str = "AutoTokenizer") -> dict:
    """Share of lines on which a transformers tokenizer loaded from ``output`` gives SentencePiece's ids."""
    hf = getattr(import_transformers(), tokenizer_class).from_pretrained(output)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(output, "tokenizer.model"))
    lines = [line for text in texts for line in text.split("\n") if line.strip()]
    expected = sp.encode(lines)
    got = [hf.encode(line, add_special_tokens=False) for line in lines]
    same = sum(1 for a, b in zip(expected, got) if a == b)
    decoded_same = sum(1 for line, ids in zip(lines, got) if hf.decode(ids) == line)
    return {"class": type(hf).__name__, "lines": len(lines), "identical_ids": same / max(len(lines), 1),
            "lossless_decode": decoded_same / max(len(lines), 1)}


def _match_sentencepiece_spaces(path: str, sp: spm.SentencePieceProcessor) -> None:
    """Make the fast tokenizer treat spaces as SentencePiece does.

    transformers' converter uses a ``Metaspace`` pre-tokenizer, which adds the
    dummy prefix only when the text does not already start with a space: a
    line starting with spaces then loses one. SentencePiece always adds it;
    a normalizer that prepends ``▁`` and then maps every space to ``▁`` does
    the same.
    """
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(sp.serialized_model_proto())
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    steps = [{"type": "Prepend", "prepend": "\u2581"}] if proto.normalizer_spec.add_dummy_prefix else []
    steps.append({"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"})
    config["normalizer"] = {"type": "Sequence", "normalizers": steps}
    config["pre_tokenizer"] = None
    _write_json(config, path)


def _write_json(obj: dict, path: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
    os.replace(path + ".tmp", path)
