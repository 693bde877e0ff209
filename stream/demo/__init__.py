"""``glassbox demo``: an embedded broker, a worker, a notifier and a drifting stream, all in one command.

Shipped inside the package, training example included, so the demo runs from an installed wheel.
``run`` drives it (:func:`~stream.demo.run.run_demo`); ``home`` holds its options and folder, ``processes``
the child processes, ``feed`` the alerts read back from Kafka, ``display`` the live view and the summary,
``reports`` the model training and Evidently reports, ``training`` and ``stream_data`` the model and the traffic.
May import the rest of :mod:`stream` (never :mod:`stream.cli`, which wraps it as a command).
"""
