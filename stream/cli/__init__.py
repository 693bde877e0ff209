"""``glassbox``: the command line, one module per command group, registered in :mod:`~stream.cli.main`.

Nothing in the package imports the CLI; the CLI imports the rest lazily, inside each command, so that
``glassbox --help`` stays fast. Every command fails with one line (``glassbox: error: ...``), never a traceback.
"""
