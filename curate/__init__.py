"""curate: raw text dumps in, a pre-training corpus out.

Documents flow as Arrow tables through small stages (``curate.stages``), run on
Ray by ``curate.runner`` and land as Parquet that DuckDB queries (``curate.stats``).
"""

__version__ = "0.1.0"
