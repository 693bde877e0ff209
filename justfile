# glassbox tasks. `just --list` shows them (just comes with the dev group: `uv run just --list`).

# run the end-to-end demo on the embedded defaults
demo *ARGS:
    uv run glassbox demo {{ARGS}}

# the test suite (what CI runs)
test *ARGS:
    uv run pytest {{ARGS}}

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
