"""Subcommands of the ``wsol`` command line (see :mod:`wsol.cli`)."""
