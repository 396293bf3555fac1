# Two commands do everything (see README.md):
#   make demo   set up .venv, execute every notebook (smoke profile) into build/, print results
#   make test   set up .venv, run the test suite (library tests + every notebook under nbmake)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: setup demo test sync-notebooks clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/python tools/run_notebooks.py --out build/notebooks

# Library tests in parallel; then the notebooks one after another in their order (06 reuses the
# runs of 04 and 05), from scratch in build/test-runs; then the backend-agnostic tests on JAX.
test: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests
	rm -rf build/test-runs
	SUPCON_PROFILE=smoke SUPCON_RUNS_DIR=build/test-runs $(BIN)/python -m pytest --nbmake notebooks
	KERAS_BACKEND=jax $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not tensorflow_only" \
		tests/test_losses.py tests/test_models.py tests/test_augment.py tests/test_training.py \
		tests/test_benchmarks.py tests/test_hybrid_and_momentum.py

# Regenerate every .ipynb from its py:percent source (outputs stripped).
sync-notebooks: setup
	$(BIN)/jupytext --sync notebooks/[0-9]*.py

clean:
	rm -rf build .pytest_cache
