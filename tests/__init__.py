"""curate's test-suite (``curate.tests``)."""
