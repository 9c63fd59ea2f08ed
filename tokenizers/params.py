"""The tokenizer commands' parameters: typed, validated, and light to import.

The CLI reads its option defaults from these dataclasses, so ``curate --help``
shows the values the library uses without importing SentencePiece or Arrow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: Script name -> code point ranges (inclusive). Only CJK-specific blocks: adding a piece made of
#: characters English text also uses (curly quotes, dashes) could change how English is tokenized.
SCRIPTS: dict[str, list[tuple[int, int]]] = {
    "han": [(0x3007, 0x3007), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F),
            (0x30000, 0x323AF)],
    "cjk_punct": [(0x3000, 0x3006), (0x3008, 0x303F), (0xFE10, 0xFE1F), (0xFE30, 0xFE4F), (0xFF01, 0xFF0F),
                  (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65)],
    "bopomofo": [(0x3100, 0x312F), (0x31A0, 0x31BF)],
    "kana": [(0x3040, 0x30FF), (0x31F0, 0x31FF)],
}
SPACE = "\u2581"


@dataclass
class TrainParams:
    vocab_size: int = 32000
    model_type: Literal["bpe", "unigram"] = "bpe"
    sample_bytes: int = 1 << 30
    """Text bytes sampled for training, shared between sources by ``source_weights``."""
    source_weights: dict[str, float] = field(default_factory=dict)
    """Share of the sample per source (normalized); empty: each source's share of the corpus."""
    heldout_fraction: float = 0.01
    """Documents kept out of training to measure bytes per token (by id hash)."""
    character_coverage: float = 0.9995
    """Share of characters the vocabulary must cover; the rarest rest goes through byte fallback."""
    byte_fallback: bool = True
    split_digits: bool = True
    normalization: Literal["identity", "nfkc", "nmt_nfkc"] = "identity"
    add_dummy_prefix: bool = True
    special_tokens: list[str] = field(default_factory=list)
    """User-defined symbols, always one token each (e.g. ``<|im_start|>``)."""
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = 3
    """-1 for no padding token (LLaMA has none)."""
    max_sentence_bytes: int = 8192
    """Training lines longer than this are cut (SentencePiece drops longer ones)."""
    max_sentences: int = 10_000_000
    """SentencePiece's own cap on training lines (``input_sentence_size``), sampled uniformly."""
    seed: int = 0
    threads: int = 0
    """0: every core of this machine."""

    def validate(self) -> None:
        if self.vocab_size < 300:
            raise ValueError("vocab_size: must be at least 300 (256 byte pieces + specials + characters)")
        if not 0 < self.sample_bytes:
            raise ValueError("sample_bytes: must be positive")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError("heldout_fraction: must be in [0, 1)")
        if not 0.9 <= self.character_coverage <= 1:
            raise ValueError("character_coverage: must be in [0.9, 1]")
        if any(w < 0 for w in self.source_weights.values()) or (self.source_weights and not sum(self.source_weights.values())):
            raise ValueError("source_weights: must be non-negative with a positive sum")
        ids = [i for i in (self.unk_id, self.bos_id, self.eos_id, self.pad_id) if i >= 0]
        if self.unk_id < 0:
            raise ValueError("unk_id: SentencePiece needs an unknown token")
        if len(set(ids)) != len(ids) or sorted(ids) != list(range(len(ids))):
            raise ValueError("unk_id: the special ids must be distinct and fill 0..n-1 (use -1 to drop one)")
        if self.max_sentence_bytes < 64:
            raise ValueError("max_sentence_bytes: must be at least 64")
        if len(set(self.special_tokens)) != len(self.special_tokens) or any(not t for t in self.special_tokens):
            raise ValueError("special_tokens: must be distinct, non-empty strings")


@dataclass
class ExtendParams:
    vocab_size: int = 20000
    """Vocabulary of the Chinese model trained on the input (a soft limit on small corpora)."""
    scripts: list[str] = field(default_factory=lambda: ["han", "cjk_punct"])
    """A new piece is appended only if all its characters (but a leading space) are in these scripts."""
    lang: str = "zh"
    """With curated input, train on documents whose ``lang`` starts with this (all text for plain input);
    documents without a ``lang`` (code) never enter the sample."""
    max_piece_chars: int = 4
    """Longest new piece, in characters (a leading space not counted). Chinese-LLaMA's 20,000-piece model has
    99.3% of its pieces at 4 or fewer; longer ones are mostly phrases the sample happened to repeat."""
    min_chars_per_piece: float = 50
    """The sample must hold this many characters of the chosen scripts per piece asked (``vocab_size``), or
    the extension is refused: below it BPE merges strings seen once or twice (memorised phrases). 0: no check."""
    sample_bytes: int = 1 << 30
    heldout_fraction: float = 0.02
    character_coverage: float = 0.9995
    max_sentence_bytes: int = 8192
    eval_bytes: int = 4 << 20
    """Held-out text (Chinese, and English for the identity check) used for the report, per language."""
    seed: int = 0
    threads: int = 0

    def validate(self) -> None:
        if self.vocab_size < 100:
            raise ValueError("vocab_size: must be at least 100")
        if not 1 <= self.max_piece_chars <= 16:
            raise ValueError("max_piece_chars: must be in [1, 16]")
        if self.min_chars_per_piece < 0:
            raise ValueError("min_chars_per_piece: must be >= 0 (0: no check)")
        if not self.lang.strip():
            raise ValueError("lang: must be a language code such as zh")
        unknown = [s for s in self.scripts if s not in SCRIPTS]
        if unknown or not self.scripts:
            raise ValueError(f"scripts: unknown {unknown[0] if unknown else '(empty)'} (known: {', '.join(SCRIPTS)})")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError("heldout_fraction: must be in [0, 1)")
        if not 0.9 <= self.character_coverage <= 1:
            raise ValueError("character_coverage: must be in [0.9, 1]")


@dataclass
class TokenizeParams:
    workers: int = 0
    """Parallel tasks (one CPU each); 0: every core (on a cluster: every CPU Ray offers)."""
    eos: bool = True
    """Append the EOS id after every document."""
    batch_docs: int = 1000
    text_field: str = "text"
    executor: Literal["auto", "ray", "processes", "in-process"] = "auto"
    """Where tasks run: ``ray`` (an embedded local Ray, or the cluster at ``--address`` / RAY_ADDRESS),
    ``processes`` (a pool of worker processes on this machine, ``concurrent.futures``), ``in-process``
    (one task after another in the command's own process), or ``auto``: Ray for a cluster, in process
    for one worker, one task or a small input (``in_process_mb``), else threads of this process where the
    encoder runs outside the GIL (rank BPE: tiktoken's core and SentencePiece), processes otherwise. Why processes rather
    than an embedded Ray on one machine: docs/tokenizer.md (start and stop cost 0.5 s against 4 s)."""
    in_process_mb: float = 8.0
    """``auto`` runs in process when the text to tokenize is at most this many MB (about a CPU-second
    at the encoder's rate: less than starting workers would save)."""
    task_mb: float = 16.0
    """A Parquet file with more text than this is cut into tasks of row ranges of about this much text
    (one big file runs on every worker). Recorded in meta.json: a resumed run must cut the same tasks."""

    def validate(self) -> None:
        if self.workers < 0:
            raise ValueError("workers: must be >= 0")
        if self.batch_docs < 1:
            raise ValueError("batch_docs: must be >= 1")
        if self.executor not in ("auto", "ray", "processes", "in-process"):
            raise ValueError("executor: must be auto, ray, processes or in-process")
        if self.in_process_mb < 0:
            raise ValueError("in_process_mb: must be 0 or more")
        if not self.task_mb > 0:
            raise ValueError("task_mb: must be positive")
