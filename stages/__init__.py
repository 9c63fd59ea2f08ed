"""Pipeline stages (``curate.stages``): one module per stage.

Per-document stages subclass ``curate.stage.Stage``; the global dedup stage
subclasses ``curate.stage.GlobalStage``. ``curate.stage.STAGES`` maps the
names used in pipeline configs to these classes.
"""
