"""Tokenizer training, Chinese vocabulary extension and corpus tokenization (``curate.tokenizers``)."""
