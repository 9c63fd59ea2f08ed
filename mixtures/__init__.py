"""Source mixtures for pretraining (``curate.mixtures``)."""
