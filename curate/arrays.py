"""Arrow arrays from Python lists, built from buffers.

``pa.array`` (and everything built on it: ``pa.table`` of lists, ``Table.from_pylist``) imports pandas on
its first call in a process, 0.2 CPU-seconds, even for a numpy input. A run's driver (ids, timing) and a
tokenize worker have no other use for pandas, so where they turn Python values into Arrow they use these.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY = {pa.int32(): np.int32, pa.int64(): np.int64, pa.float32(): np.float32, pa.float64(): np.float64}


def _validity(values) -> tuple[pa.Buffer | None, int]:
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    nulls = len(valid) - int(valid.sum())
    return (pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None), nulls


def string_array(values) -> pa.Array:
    """``pa.array(values, pa.string())``; None is null."""
    data = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    if offsets[-1] >= 1 << 31:
        raise ValueError("string_array: more than 2 GB of text")
    validity, nulls = _validity(values)
    return pa.Array.from_buffers(pa.string(), len(data), [
        validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(data))], null_count=nulls)


def int64_array(values: np.ndarray) -> pa.Array:
    """``pa.array(values, pa.int64())`` for a numpy array without nulls (no copy when it is int64 already)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def to_numpy(array: pa.Array, dtype) -> np.ndarray:
    """The values of an Arrow array of fixed-width numbers without nulls, as numpy (no copy; where
    ``Array.to_numpy`` would import pandas, as it does for some types)."""
    dtype = np.dtype(dtype)
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def numbers_array(values, type: pa.DataType) -> pa.Array:
    """``pa.array(values, type)`` for int32/int64/float32/float64; None is null."""
    if type not in _NUMPY:
        raise TypeError(f"numbers_array: {type} is not one of {', '.join(map(str, _NUMPY))}")
    data = np.array([0 if v is None else v for v in values], dtype=_NUMPY[type])
    validity, nulls = _validity(values)
    return pa.Array.from_buffers(type, len(data), [validity, pa.py_buffer(data)], null_count=nulls)


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """``pa.Table.from_pylist(rows, schema=schema)`` for string and number columns (missing keys: null)."""
    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        columns.append(string_array(values) if field.type == pa.string() else numbers_array(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)
