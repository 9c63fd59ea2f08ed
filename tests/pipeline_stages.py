"""Stages used only by the tests, importable by Ray workers as ``curate.tests.pipeline_stages``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from curate.stage import GlobalStage, Stage, StageResult


@dataclass
class ExplodeParams:
    marker: str = "EXPLODE"


class ExplodeOnMarker(Stage):
    """Raises on any batch containing a document with the marker: a stage bug the runner must contain."""

    name = "explode"
    Params = ExplodeParams
    outputs = (pa.field("explode_checked", pa.bool_()),)

    def process(self, table: pa.Table) -> StageResult:
        if pc.any(pc.match_substring(table["text"], self.params.marker)).as_py():
            raise RuntimeError("boom")
        return StageResult(table.append_column("explode_checked", pa.array([True] * table.num_rows)))


@dataclass
class SlowParams:
    seconds_per_batch: float = 0.2


class Slow(Stage):
    """Sleeps per batch so that a test can kill a run while it is in the middle."""

    name = "slow"
    Params = SlowParams
    outputs = (pa.field("worker_pid", pa.int64()),)

    def process(self, table: pa.Table) -> StageResult:
        time.sleep(self.params.seconds_per_batch)
        return StageResult(table.append_column("worker_pid", pa.array([os.getpid()] * table.num_rows, pa.int64())))


@dataclass
class DieParams:
    marker: str = "DIE"


class DieOnMarker(Stage):
    """Kills its own worker process: the runner must retry and then report the task as failed."""

    name = "die"
    Params = DieParams

    def process(self, table: pa.Table) -> StageResult:
        if pc.any(pc.match_substring(table["text"], self.params.marker)).as_py():
            os._exit(13)
        return StageResult(table)


class KeepFirstText(GlobalStage):
    """A minimal global stage: of documents with identical text, keep the smallest id."""

    name = "keep_first_text"

    def run(self, shards: list[str], workdir: str, *, workers: int) -> dict:
        import duckdb

        con = duckdb.connect()
        files = ", ".join(f"'{s}'" for s in shards)
        losers = con.sql(
            "SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY text ORDER BY id) AS rank "
            f"FROM read_parquet([{files}])) WHERE rank > 1").to_arrow_table()
        import pyarrow.parquet as pq

        pq.write_table(losers, f"{workdir}/losers.parquet")
        return {"shards": len(shards), "losers": losers.num_rows}

    def load_decisions(self, workdir: str) -> None:
        import pyarrow.parquet as pq

        self.losers = pq.read_table(f"{workdir}/losers.parquet")["id"]

    def process(self, table: pa.Table) -> StageResult:
        lost = pc.is_in(table["id"], value_set=self.losers)
        return StageResult(table, pc.if_else(lost, pa.scalar("duplicate-text"), pa.scalar(None, pa.string())))
