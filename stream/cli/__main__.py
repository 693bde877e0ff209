"""``python -m stream.cli ...``: the ``glassbox`` command (what the demo and the tests spawn)."""

from stream.cli.main import main

main()
