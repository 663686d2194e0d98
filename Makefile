# The two commands of the README: `make demo` and `make test`. Both build .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean locks

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vzkeep demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# What the exporter host and the state container install, pinned with PyPI's hashes. Re-run after changing
# the runtime dependencies in pyproject.toml or locks/seaweedfs.in; `make locks UPGRADE=--upgrade` moves every
# pin to the newest release allowed. A test fails while the lock no longer satisfies pyproject.toml.
LOCK := $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes --custom-compile-command 'make locks' $(UPGRADE)
locks: $(STAMP)
	$(BIN)/pip install --quiet 'uv>=0.5'
	$(LOCK) pyproject.toml -o locks/exporter.txt
	$(LOCK) locks/seaweedfs.in -o locks/seaweedfs.txt

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
