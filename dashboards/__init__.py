"""Reports over a run's DuckDB views (``curate.dashboards``)."""
