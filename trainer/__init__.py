"""LLaMA-style pretraining on a `curate mix` folder (``curate.trainer``): model, loop, checkpoints, HF import/export.

Importing this package imports nothing heavy; torch is needed by ``model``, ``train``, ``checkpoint`` and ``hf``.
"""
