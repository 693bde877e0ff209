"""``glassbox``: the command line, one module per command group, registered explicitly in :mod:`~stream.cli.main`.

``kafka`` (``broker``, ``produce``), ``worker``, ``replay``, ``explain``, ``reference``, ``alerts`` (``alerts``,
``silence``) and ``demo``; ``options`` holds what they share (``--config``, settings, the Kafka to use, logging
options) and ``logs`` the log formats of the long-running commands. ``python -m stream.cli`` runs it.

Nothing in the package imports the CLI; the CLI imports the rest lazily, inside each command, so that
``glassbox --help`` stays fast and works with only the producer SDK installed. Every command fails with one line
(``glassbox: error: ...``), never a traceback.
"""
