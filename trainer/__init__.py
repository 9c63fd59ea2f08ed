"""The bundled GPT training loop (``curate.trainer``)."""
