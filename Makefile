# Two entry points (see README): `make demo` and `make test`. Each creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch must be installed before the package (an unpinned torch pulls CUDA wheels).
TORCH ?= torch==2.13.0

.PHONY: venv demo test lint bench replicate clean

$(BIN)/sepcheck: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -qq $(TORCH)
	$(BIN)/pip install -qq -e '.[test]'
	touch $(BIN)/sepcheck

venv: $(BIN)/sepcheck

demo: venv
	$(BIN)/sepcheck separation spiral --split both --plot out/spiral_hist.png

test: venv
	$(BIN)/ruff check sepcheck tests benchmarks examples
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider

bench: venv
	$(BIN)/python benchmarks/bench_separation.py
	$(BIN)/python benchmarks/bench_memory.py

replicate: venv
	nice -n 19 $(BIN)/python benchmarks/replicate_mnist.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
