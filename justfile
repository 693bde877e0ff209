# glassbox tasks. `just --list` shows them (just comes with the dev group: `uv run just --list`).

# run the end-to-end demo on the embedded defaults
demo *ARGS:
    uv run glassbox demo {{ARGS}}

# the test suite (the README's command; CI also runs the wheel test and the 3.13 smoke set: `just ci`)
test *ARGS:
    uv run pytest {{ARGS}}

# the system tests: glassbox processes end to end (worker, notifier, demo)
test-system:
    uv run pytest -m system

# long soak variants
soak:
    uv run pytest -m slow

# benchmarks: each prints its figures and the ratio against a baseline measured in the same run
bench:
    for b in bench/bench_*.py; do echo "== $b"; uv run python "$b"; done

# lint
lint:
    uv run ruff check .

# reproducible wheel: pinned build backend, SOURCE_DATE_EPOCH from the last commit
build:
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) uv build --build-constraint build-constraints.txt

# the wheel test: build, install into fresh virtualenvs outside the repo, run demo, replay and the SDK from there
test-wheel:
    uv run pytest -m wheel

# what CI runs: the suite, the system tests, the wheel test, and the Python 3.13 smoke set when 3.13 is installed
ci:
    .ci/run
