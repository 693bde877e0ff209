"""Train, evaluate, gate and register the demo's churn model with its reference: see :mod:`stream.demo.training`.

Run it: ``uv run python examples/train_reference.py --tracking-uri sqlite:///.glassbox/mlflow.db``.
"""

from stream.demo.training import main

if __name__ == "__main__":
    raise SystemExit(main())
