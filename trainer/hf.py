"""Hugging Face LLaMA folders in and out: import (with vocabulary growth) and export.

Import reads ``config.json`` and the ``*.safetensors`` files of a local
``LlamaForCausalLM`` folder; nothing is downloaded and transformers is not
needed. When the mixture's tokenizer is a ``curate tokenizer extend`` of the
folder's ``tokenizer.model`` (same pieces at every base id, new pieces
appended), the embedding and output matrices grow: base ids keep their rows,
and each new piece's row starts as the mean of the base rows of the tokens the
base tokenizer splits that piece into (its "old tokenization"), so a new
piece starts where the model already understood its text. Text made only of
base tokens gets exactly the logits it had before.

Export writes what ``LlamaForCausalLM.from_pretrained`` loads: ``config.json``,
``generation_config.json``, ``model.safetensors`` and the tokenizer files of
``curate tokenizer export-hf``. Rotary embeddings share Hugging Face's
"rotate half" layout, so no weight is permuted either way.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import torch

from curate.trainer.model import ModelArgs

SPACE = "\u2581"

#: Our parameter name -> Hugging Face's, ``{i}`` standing for the layer index.
LAYER_NAMES = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
}
TOP_NAMES = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}


class HFError(ValueError):
    """A Hugging Face folder that cannot be imported, or a run that cannot be exported; names the file."""


def pad_vocab(n: int, multiple: int = 64) -> int:
    return -(-n // multiple) * multiple


def to_hf_names(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        if name in TOP_NAMES:
            out[TOP_NAMES[name]] = tensor
            continue
        prefix, index, rest = name.split(".", 2)
        if prefix != "layers" or rest not in LAYER_NAMES:
            raise HFError(f"unexpected parameter {name!r}")
        out[f"model.layers.{index}.{LAYER_NAMES[rest]}"] = tensor
    return out


def from_hf_names(state: dict[str, torch.Tensor], n_layers: int, where: str) -> dict[str, torch.Tensor]:
    top = {v: k for k, v in TOP_NAMES.items()}
    layer = {v: k for k, v in LAYER_NAMES.items()}
    out = {}
    for name, tensor in state.items():
        if name in top:
            out[top[name]] = tensor
            continue
        parts = name.split(".", 3)
        if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in layer:
            out[f"layers.{parts[2]}.{layer[parts[3]]}"] = tensor
        elif name.endswith("rotary_emb.inv_freq"):
            continue  # old transformers saved this buffer; it is recomputed
        else:
            raise HFError(f"{where}: unexpected tensor {name!r} (not a LLaMA checkpoint?)")
    return out


# ---------------------------------------------------------------------------------------------------- import


def read_hf_config(folder: str) -> dict:
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise HFError(f"{path}: missing (init_from must be a local Hugging Face LLaMA folder)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise HFError(f"{path}: unreadable ({err})") from None
    if config.get("model_type") != "llama":
        raise HFError(f"{path}: model_type: expected 'llama', got {config.get('model_type')!r}")
    for key, expected in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
        if config.get(key, expected) != expected:
            raise HFError(f"{path}: {key}: {config[key]!r} is not supported (LLaMA uses {expected!r})")
    scaling = config.get("rope_scaling") or {}
    rope_type = (config.get("rope_parameters") or {}).get("rope_type", scaling.get("rope_type", "default"))
    if rope_type != "default" or (scaling and scaling.get("rope_type", scaling.get("type")) != "default"):
        raise HFError(f"{path}: rope_scaling/rope_parameters: only plain rotary embeddings are supported")
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    if config.get("head_dim") not in (None, hidden // heads):
        raise HFError(f"{path}: head_dim: {config['head_dim']} differs from hidden_size / num_attention_heads")
    return config


def model_args_from_hf(config: dict, vocab_rows: int, max_seq_len: int) -> ModelArgs:
    theta = (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta", 10000.0))
    return ModelArgs(
        dim=config["hidden_size"], n_layers=config["num_hidden_layers"], n_heads=config["num_attention_heads"],
        n_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
        vocab_size=vocab_rows, hidden_dim=config["intermediate_size"], norm_eps=config.get("rms_norm_eps", 1e-6),
        rope_theta=float(theta), max_seq_len=max_seq_len, tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        init_std=config.get("initializer_range", 0.02))


def read_hf_weights(folder: str) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors files, as float32, Hugging Face names."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    if not files:
        raise HFError(f"{folder}: no *.safetensors file (save the model with safe_serialization)")
    state = {}
    for path in files:
        try:
            tensors = load_file(path)
        except (SafetensorError, OSError) as err:
            raise HFError(f"{path}: cannot be read ({err})") from None
        state.update({name: t.float() for name, t in tensors.items()})
    return state


def load_pretrained(folder: str, tokenizer_path: str, tokenizer_vocab: int, max_seq_len: int
                    ) -> tuple[ModelArgs, dict[str, torch.Tensor], dict]:
    """Model arguments and our-named weights from a HF folder, grown to the mixture's tokenizer if it extends it.

    Returns (args, state, report); the report says how many rows were added.
    """
    config = read_hf_config(folder)
    state = from_hf_names(read_hf_weights(folder), config["num_hidden_layers"], folder)
    if "output.weight" not in state and not config.get("tie_word_embeddings", False):
        raise HFError(f"{folder}: no lm_head.weight and tie_word_embeddings is false")
    rows = state["tok_embeddings.weight"].shape[0]
    report: dict = {"init_from": os.path.abspath(folder), "hf_rows": rows, "added_pieces": 0}
    base_model = os.path.join(folder, "tokenizer.model")
    if os.path.isfile(base_model):
        base_vocab = _check_extends(base_model, tokenizer_path)
        if tokenizer_vocab > base_vocab:
            state = grow_vocabulary(state, base_model, tokenizer_path, base_vocab, tokenizer_vocab)
            report["added_pieces"] = tokenizer_vocab - base_vocab
    elif tokenizer_vocab > rows:
        raise HFError(f"{folder}: the mixture's tokenizer has {tokenizer_vocab} pieces but the model only {rows} "
                      "rows, and there is no tokenizer.model to grow the vocabulary from")
    rows = state["tok_embeddings.weight"].shape[0]
    if rows % 64:
        state = _pad_rows(state, pad_vocab(rows))
    if config.get("tie_word_embeddings", False):
        state.pop("output.weight", None)
    args = model_args_from_hf(config, state["tok_embeddings.weight"].shape[0], max_seq_len)
    report["vocab_rows"] = args.vocab_size
    return args, state, report


def _check_extends(base_model: str, tokenizer_path: str) -> int:
    """The base tokenizer's size, after checking every base id has the same piece in the mixture's tokenizer."""
    import sentencepiece as spm

    base = spm.SentencePieceProcessor(model_file=base_model)
    new = spm.SentencePieceProcessor(model_file=tokenizer_path)
    if new.get_piece_size() < base.get_piece_size():
        raise HFError(f"{tokenizer_path}: the mixture's tokenizer ({new.get_piece_size()} pieces) is smaller than "
                      f"{base_model} ({base.get_piece_size()}): it does not extend it")
    for i in range(base.get_piece_size()):
        if base.id_to_piece(i) != new.id_to_piece(i):
            raise HFError(f"{tokenizer_path}: id {i} is {new.id_to_piece(i)!r} but {base.id_to_piece(i)!r} in "
                          f"{base_model}: the mixture's tokenizer is not an extension of the model's "
                          "(make it with `curate tokenizer extend --base`)")
    return base.get_piece_size()


def old_tokenization(base_model: str, tokenizer_path: str, base_vocab: int, new_vocab: int) -> list[list[int]]:
    """For each new piece (ids base_vocab..new_vocab-1), the base ids its text encodes to."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    with open(base_model, "rb") as f:
        proto.ParseFromString(f.read())
    proto.normalizer_spec.add_dummy_prefix = False  # a piece's own leading "▁" stands for its space
    base = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    new = spm.SentencePieceProcessor(model_file=tokenizer_path)
    texts = [new.id_to_piece(i).replace(SPACE, " ") for i in range(base_vocab, new_vocab)]
    return [[i for i in ids if i < base_vocab] for ids in base.encode(texts)]


def grow_vocabulary(state: dict[str, torch.Tensor], base_model: str, tokenizer_path: str, base_vocab: int,
                    new_vocab: int) -> dict[str, torch.Tensor]:
    """Embedding and output rows for ids base_vocab..new_vocab-1: the mean of their old tokenization's rows."""
    pieces = old_tokenization(base_model, tokenizer_path, base_vocab, new_vocab)
    rows = max(pad_vocab(new_vocab), state["tok_embeddings.weight"].shape[0])
    out = dict(state)
    for name in ("tok_embeddings.weight", "output.weight"):
        if name not in state:
            continue
        old = state[name]
        mean_all = old[:base_vocab].mean(0)
        grown = mean_all.expand(rows, old.shape[1]).clone()
        grown[:old.shape[0]] = old  # base rows (and any trained padding rows) unchanged ...
        for offset, ids in enumerate(pieces):  # ... then every new piece from its old tokenization
            grown[base_vocab + offset] = old[ids].mean(0) if ids else mean_all
        out[name] = grown
    return out


def _pad_rows(state: dict[str, torch.Tensor], rows: int) -> dict[str, torch.Tensor]:
    out = dict(state)
    for name in ("tok_embeddings.weight", "output.weight"):
        if name in state:
            old = state[name]
            out[name] = torch.cat([old, old.mean(0, keepdim=True).expand(rows - old.shape[0], -1)])
    return out


# ---------------------------------------------------------------------------------------------------- export


def hf_config(args: ModelArgs, bos_id: int | None, eos_id: int | None, dtype: str) -> dict:
    """A LlamaConfig as transformers 4.40+ and 5.x read it (rope_theta in both places)."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": args.dim, "intermediate_size": args.hidden_dim, "num_hidden_layers": args.n_layers,
        "num_attention_heads": args.n_heads, "num_key_value_heads": args.n_kv_heads, "head_dim": args.head_dim,
        "hidden_act": "silu", "max_position_embeddings": args.max_seq_len, "rms_norm_eps": args.norm_eps,
        "rope_theta": args.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": args.rope_theta},
        "vocab_size": args.vocab_size, "tie_word_embeddings": args.tie_embeddings, "attention_bias": False,
        "mlp_bias": False, "attention_dropout": 0.0, "initializer_range": args.init_std, "use_cache": True,
        "bos_token_id": bos_id, "eos_token_id": eos_id, "torch_dtype": dtype, "pretraining_tp": 1,
    }


def export_run(run: str, output: str, *, step: int | None = None, dtype: str = "float32",
               overwrite: bool = False) -> dict:
    """Write checkpoint ``step`` (default: the newest) of ``run`` as a Hugging Face LLaMA folder, atomically."""
    import sentencepiece as spm
    from safetensors.torch import save_file

    from curate.tokenizers.export_hf import export_hf
    from curate.trainer.checkpoint import list_checkpoints, load_file, read_state

    config_path = os.path.join(run, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            run_config = json.load(f)
    except FileNotFoundError:
        raise HFError(f"{config_path}: missing ({run} is not a `curate train` run folder)") from None
    checkpoints = dict(list_checkpoints(run))
    if not checkpoints:
        raise HFError(f"{run}/checkpoints: no checkpoint to export yet")
    if step is None:
        step = max(checkpoints)
    if step not in checkpoints:
        have = ", ".join(map(str, sorted(checkpoints)))
        raise HFError(f"{run}/checkpoints: no checkpoint of step {step} (have: {have})")
    if os.path.exists(output) and os.listdir(output) and not overwrite:
        raise HFError(f"{output}: exists and is not empty (use --overwrite)")
    folder = checkpoints[step]
    read_state(folder)
    state = load_file(folder, "model.pt")
    args = ModelArgs(**run_config["model"])
    tokenizer_model = os.path.join(run, "tokenizer.model")
    if not os.path.isfile(tokenizer_model):
        raise HFError(f"{tokenizer_model}: missing (the run folder is incomplete)")
    sp = spm.SentencePieceProcessor(model_file=tokenizer_model)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    tensors = {name: t.to(torch_dtype).contiguous() for name, t in to_hf_names(state, args.n_layers).items()}
    if args.tie_embeddings:
        tensors.pop("lm_head.weight", None)  # safetensors stores no shared tensors; transformers ties it back

    tmp = output.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    bos, eos = sp.bos_id(), sp.eos_id()
    _write_json(hf_config(args, bos if bos >= 0 else None, eos if eos >= 0 else None, dtype),
                os.path.join(tmp, "config.json"))
    _write_json({"bos_token_id": bos if bos >= 0 else None, "eos_token_id": eos if eos >= 0 else None,
                 "_from_model_config": True}, os.path.join(tmp, "generation_config.json"))
    save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    tokenizer = export_hf(tokenizer_model, tmp, model_max_length=args.max_seq_len)
    if os.path.exists(output):
        shutil.rmtree(output)
    os.replace(tmp, output)
    return {"output": output, "step": step, "checkpoint": folder, "dtype": dtype, "vocab_size": args.vocab_size,
            "tokenizer_pieces": sp.get_piece_size(), "files": sorted(os.listdir(output)),
            "tokenizer_json": tokenizer["tokenizer_json"]}


def _write_json(obj: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
