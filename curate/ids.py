"""Ids unique in a run, whatever the inputs call their documents.

A reader keeps the id an input gives (JSONL and Parquet ``id_field``), and inputs
are often numbered from 0 each: two files both holding ids 0-99. A run treats
ids as names: the dedup stage decides per id, and users join on them. So once
every document exists exactly once (after the first segment: in its docs shards
and the rejects), the ids that name more than one document are found (DuckDB,
only the ``id`` column is read) and *every* document carrying one of them is
renamed:

    id        a new, stable id: a hash of the source, the given id and where the
              document landed (shard file name and row), so a rerun of the same
              command gives the same ids
    given_id  the id the input gave it (null for documents whose id was unique)

An id that is unique in the run is kept as given. The set of colliding ids is
written to ``work/ids/`` before any shard is rewritten, and a shard is rewritten
under a temporary name and renamed into place: a run killed half-way redoes the
remaining shards with the same decision (a renamed document no longer carries a
colliding id, so rewriting a shard twice changes nothing).

An output in an object store is handled the same way through ``curate.storage``: a shard to rewrite
is read there, written to local scratch space and uploaded whole over its key.
"""

from __future__ import annotations

import json
import os

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import storage
from curate.arrays import string_array
from curate.schema import GIVEN_ID, ID, SOURCE, doc_id
from curate.shards import write_json_atomic, write_table_atomic

DECISION = "colliding.parquet"
DONE = "ids.json"


def make_unique(shards: list[str], workdir: str) -> dict:
    """Rename the documents of ``shards`` whose id is not unique among them; returns the counts.

    ``{"colliding_ids": ids that named 2+ documents, "renamed": documents renamed}``; the counts are
    kept in ``workdir`` so that a resumed run reports them without reading the shards again.
    """
    done = storage.join(workdir, DONE)
    if storage.exists(done):
        if storage.is_remote(done):
            return {**storage.read_json(done), "reported": True}
        with open(done, encoding="utf-8") as f:
            return {**json.load(f), "reported": True}
    storage.makedirs(workdir)
    decision = storage.join(workdir, DECISION)
    if storage.exists(decision):
        colliding = storage.read_table(decision)[ID].combine_chunks()
    else:
        colliding = _colliding(shards)
        write_table_atomic(decision, pa.table({ID: colliding}))
    renamed = sum(_rewrite(shard, colliding) for shard in shards) if len(colliding) else 0
    result = {"colliding_ids": len(colliding), "renamed": renamed}
    write_json_atomic(done, result)
    return result


def _colliding(shards: list[str]) -> pa.Array:
    if not shards:
        return pa.nulls(0, pa.string())
    con = duckdb.connect()
    source: list[str] = shards
    if storage.is_remote(shards[0]):
        storage.register_duckdb(con, shards[0])
        # DuckDB through fsspec reads 1,000 objects given as a list in 18 s against moto, by their folder's
        # glob in 1.3 s (benchmarks/remote_output.py --small-objects): the globs, when they name exactly these
        patterns = sorted({storage.join(storage.dirname(s), "*.parquet") for s in shards})
        if sorted(p for pattern in patterns for p in storage.glob(pattern)) == sorted(shards):
            source = patterns
    # as Arrow, not Python rows: pa.array over a list imports pandas, 0.2 s of every run's fixed cost
    table = con.sql("SELECT id::VARCHAR AS id FROM read_parquet(?, union_by_name = true) GROUP BY id "
                    "HAVING count(*) > 1 ORDER BY id", params=[source]).to_arrow_table()
    return table[ID].combine_chunks() if table.num_rows else pa.nulls(0, pa.string())


def _rewrite(path: str, colliding: pa.Array) -> int:
    """Rename the rows of one shard whose id collides; returns how many rows carry a given_id afterwards.

    Streams the shard batch by batch into a temporary file renamed over it: memory stays bounded by a batch.
    """
    shard = storage.parquet_file(path)
    schema = shard.schema_arrow
    if not pc.any(pc.is_in(shard.read(columns=[ID])[ID], value_set=colliding)).as_py():
        if GIVEN_ID not in schema.names:
            return 0
        given = shard.read(columns=[GIVEN_ID])[GIVEN_ID]
        return len(given) - given.null_count
    out_schema = schema if GIVEN_ID in schema.names else schema.append(pa.field(GIVEN_ID, pa.string()))
    stem, row0, renamed = storage.basename(path), 0, 0
    tmp = storage.local_temp(path) if storage.is_remote(path) else f"{path}.tmp-ids-{os.getpid()}"
    with pq.ParquetWriter(tmp, out_schema, compression="zstd") as writer:
        for batch in shard.iter_batches(batch_size=65_536):
            ids = batch.column(ID).to_pylist()
            sources = batch.column(SOURCE).to_pylist()
            given = batch.column(GIVEN_ID).to_pylist() if GIVEN_ID in schema.names else [None] * batch.num_rows
            for row in pc.indices_nonzero(pc.is_in(batch.column(ID), value_set=colliding)).to_pylist():
                given[row] = ids[row]
                ids[row] = doc_id(sources[row], f"{ids[row]}\x00{stem}\x00{row0 + row}")
            columns = {name: batch.column(name) for name in schema.names}
            columns[ID] = string_array(ids).cast(schema.field(ID).type)
            columns[GIVEN_ID] = string_array(given)
            writer.write_table(pa.table([columns[name] for name in out_schema.names], schema=out_schema),
                               row_group_size=64_000)
            renamed += sum(g is not None for g in given)
            row0 += batch.num_rows
    storage.put_file(tmp, path)
    return renamed
