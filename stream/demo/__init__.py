"""``glassbox demo``: an embedded broker, a worker, a notifier and a drifting stream, all in one command.

Shipped inside the package, training example included, so the demo runs from an installed wheel.
"""
