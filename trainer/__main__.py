"""``python -m curate.trainer CONFIG --mixture MIX --output RUN``: one rank of ``curate train`` (torchrun runs this)."""

from curate.trainer.cli import main

main()
