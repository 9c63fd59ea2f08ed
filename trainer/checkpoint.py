"""Checkpoints you can see with ``ls``: ``RUN/checkpoints/step-000123/``, whole or absent.

A checkpoint is written into ``step-000123.tmp`` and renamed into place; the
rename is the commit, so a run killed while writing leaves a ``.tmp`` folder
(removed on the next start) and never a half-written ``step-*``. Inside:

    model.pt       the full model state dict (gathered from the shards under FSDP), float32
    optimizer.pt   the full AdamW state, keyed by parameter name (any rank count can load it)
    rng.pt         every rank's torch (and CUDA) generator state
    state.json     step, tokens, data position, the mixture's fingerprint, and each file's size

``state.json`` is written last and lists the other files' sizes, so a file that
is missing or truncated afterwards (a copy cut short, a full disk) is reported
by name instead of failing somewhere inside ``torch.load``.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import torch

STEP_DIR = re.compile(r"^step-(\d{6,})$")
FILES = ("model.pt", "optimizer.pt", "rng.pt")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file."""


def checkpoints_dir(run: str) -> str:
    return os.path.join(run, "checkpoints")


def step_dir(run: str, step: int) -> str:
    return os.path.join(checkpoints_dir(run), f"step-{step:06d}")


def list_checkpoints(run: str) -> list[tuple[int, str]]:
    """Committed checkpoints, oldest first: (step, folder)."""
    folder = checkpoints_dir(run)
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = STEP_DIR.match(name)
        if match and os.path.isdir(os.path.join(folder, name)):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found)


def remove_partial(run: str) -> list[str]:
    """Delete ``.tmp`` folders left by a run killed while writing a checkpoint."""
    folder = checkpoints_dir(run)
    removed = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.endswith(".tmp"):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
                removed.append(name)
    return removed


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save(obj, path: str) -> int:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    return os.path.getsize(path)


def save(run: str, step: int, model_state: dict, optimizer_state: dict, rng_states: list[dict], state: dict,
         keep: int) -> str:
    """Write a checkpoint atomically, then delete all but the newest ``keep``. Called on rank 0 only."""
    final = step_dir(run, step)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    sizes = {"model.pt": _save(model_state, os.path.join(tmp, "model.pt")),
             "optimizer.pt": _save(optimizer_state, os.path.join(tmp, "optimizer.pt")),
             "rng.pt": _save(rng_states, os.path.join(tmp, "rng.pt"))}
    with open(os.path.join(tmp, "state.json"), "w", encoding="utf-8") as f:
        json.dump({**state, "files": sizes}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    if os.path.isdir(final):  # the same step written again (a rerun): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(checkpoints_dir(run))
    for _, old in list_checkpoints(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(folder: str) -> dict:
    """``state.json`` of a checkpoint, after checking that every file it lists is there and whole."""
    path = os.path.join(folder, "state.json")
    hint = _older_hint(folder)
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (the checkpoint is incomplete){hint}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err}){hint}") from None
    for name, size in state.get("files", {}).items():
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise CheckpointError(f"{file}: missing{hint}")
        got = os.path.getsize(file)
        if got != size:
            raise CheckpointError(f"{file}: truncated or changed ({got:,} bytes, written as {size:,}){hint}")
    return state


def load_file(folder: str, name: str):
    """``torch.load`` one checkpoint file onto the CPU; an unreadable file is a ``CheckpointError`` naming it."""
    path = os.path.join(folder, name)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing{_older_hint(folder)}") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"{path}: cannot be read ({type(err).__name__}: {str(err)[:200]})"
                              f"{_older_hint(folder)}") from None


def _older_hint(folder: str) -> str:
    run = os.path.dirname(os.path.dirname(folder))
    older = [path for _, path in list_checkpoints(run) if path != folder and path < folder]
    if older:
        return f"; delete {folder} to resume from {os.path.basename(older[-1])}"
    return f"; delete {folder} to start the run again from step 0"
