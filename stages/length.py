"""Document length limits: empty, too short and oversized documents are dropped early."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from curate.stage import Stage, StageResult


@dataclass
class LengthParams:
    min_chars: int = 1
    """Documents with fewer characters (after stripping whitespace) are dropped; 1 drops empty ones."""
    max_chars: int = 5_000_000
    """Documents with more characters are dropped (a 100 MB one-line page is not prose)."""

    def validate(self) -> None:
        if self.min_chars < 0:
            raise ValueError("min_chars: must be 0 or more")
        if self.max_chars < self.min_chars:
            raise ValueError("max_chars: must be at least min_chars")


class Length(Stage):
    """Drop empty, too-short and oversized documents; adds `char_count`."""

    name = "length"
    Params = LengthParams
    outputs = (pa.field("char_count", pa.int64()),)

    def process(self, table: pa.Table) -> StageResult:
        text = table["text"].fill_null("")
        chars = pc.utf8_length(text).cast(pa.int64())
        stripped = pc.utf8_length(pc.utf8_trim_whitespace(text)).cast(pa.int64())
        table = table.append_column("char_count", chars)
        reasons = pc.if_else(
            pc.less(stripped, self.params.min_chars),
            pa.scalar("length:too-short" if self.params.min_chars > 1 else "length:empty"),
            pc.if_else(pc.greater(chars, self.params.max_chars), pa.scalar("length:too-long"),
                       pa.scalar(None, pa.string())),
        )
        return StageResult(table, reasons)
