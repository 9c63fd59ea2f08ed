"""Rules for source code (The Stack / StarCoder / Codex-style filters).

The code reader already measures each file: ``max_line_length``,
``avg_line_length``, ``alphanum_fraction`` and ``auto_generated``; a table
without those columns gets them computed here. The rules apply to rows whose
``source`` is one of ``sources`` or whose ``language`` column is set; prose
rows pass untouched (their code signals are still written).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.readers.code import SIGNAL_FIELDS, code_signals
from curate.stage import Stage, StageResult
from curate.stages.textstats import first_reason, numpy_column, text_column

class CodeQuality(Stage):
    name = "code_quality"
    #: The code reader's measures, computed here for rows that come without them (same types).
    outputs = tuple(f for f in SIGNAL_FIELDS if f.name in ("max_line_length", "avg_line_length",
                                                          "alphanum_fraction", "auto_generated"))

    @dataclass
    class Params:
        #: Rows from these sources are code (rows with a non-null ``language`` column are too).
        sources: list[str] = field(default_factory=lambda: ["code"])
        max_line_length: int = 1000
        max_avg_line_length: float = 100.0
        min_alphanum_fraction: float = 0.25
        drop_auto_generated: bool = True

        def validate(self) -> None:
            if self.max_line_length <= 0:
                raise ValueError("max_line_length: must be > 0")
            if self.max_avg_line_length <= 0:
                raise ValueError("max_avg_line_length: must be > 0")
            if not 0.0 <= self.min_alphanum_fraction <= 1.0:
                raise ValueError("min_alphanum_fraction: must be in [0, 1]")

    def process(self, table: pa.Table) -> StageResult:
        p = self.params
        n = table.num_rows
        needed = ("max_line_length", "avg_line_length", "alphanum_fraction", "auto_generated")
        missing = [name for name in needed if name not in table.column_names]
        if missing:  # the code reader's own measure (same definitions and types), vectorized
            computed = code_signals(text_column(table))
            for name in missing:
                table = table.append_column(name, computed[name])
        is_code = np.zeros(n, dtype=bool)
        if "source" in table.column_names:
            is_code |= numpy_column(pc.is_in(table["source"], value_set=pa.array(p.sources, pa.string())), bool)
        if "language" in table.column_names:
            is_code |= numpy_column(pc.is_valid(table["language"]), bool)
        max_line = numpy_column(table["max_line_length"])
        avg_line = numpy_column(table["avg_line_length"])
        alnum = numpy_column(table["alphanum_fraction"], np.float64)
        generated = numpy_column(table["auto_generated"], bool)
        reasons = first_reason(n, [
            (is_code & generated & p.drop_auto_generated, "code_quality:auto_generated"),
            (is_code & (max_line > p.max_line_length), "code_quality:max_line_length"),
            (is_code & (avg_line > p.max_avg_line_length), "code_quality:avg_line_length"),
            (is_code & (alnum < p.min_alphanum_fraction), "code_quality:alphanum_fraction"),
        ])
        return StageResult(table, reasons)
