# Two commands do everything (see README.md):
#   make demo   set up .venv, execute every notebook (smoke profile) into build/, print results
#   make test   set up .venv, run the test suite (library tests + every notebook under nbmake)
# and three more for the library itself:
#   make check-wheel     build the wheel, install it into a new venv without the dev extra, run the
#                        README's "Use it in your own model" examples outside the checkout
#   make docs            the API reference (pdoc) in build/docs/
#   make sync-notebooks  regenerate every .ipynb from its .py source
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: setup demo test test-notebooks-chained test-notebooks-apart test-notebooks-alone check-wheel docs sync-notebooks clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	rm -rf build/runs build/figures  # from scratch: runs of other settings (an older version) are refused
	$(BIN)/python tools/run_notebooks.py --out build/notebooks

# Library tests in parallel (all but TF_LEAVES_OUT, which the JAX pass alone runs), each module
# on one worker (--dist loadscope: a module-scoped run is made once, not once per worker), the
# heaviest modules first so that the light ones fill in at the end. The order is the one given
# here: --no-loadscope-reorder, because pytest-xdist otherwise sends the modules with the most
# tests first, which put the few-test, long modules (the real-kill chain, the several-device
# worker, the JAX script) at the end, one worker busy and the other idle; and every file by name,
# because pytest collects a folder given after its files in its own (alphabetical) order. Then
# the notebooks, from scratch in build/test-runs, in three streams run side by side: the
# notebooks that share run folders (04 and 05 train what 06 and 08 reuse) in their order; those
# that read no other notebook's runs (NB_APART; 09 keeps folders of its own;
# tests/test_notebooks.py checks) but NB_ALONE; and NB_ALONE, the longest of them. Three streams
# on two cores, because the kernels leave the cores idle now and then: in two back-to-back pairs
# on 2026-11-30 the notebooks took 148 -> 141 s and 149 -> 134 s, two streams -> three (three
# second, the slower place on this machine). Then the backend-specific tests again on Keras' JAX
# backend (what each pass leaves out, and why: the markers on the tests, tests/conftest.py).
# The three stages run one after another: all at once (tried 2026-12-03) took longer, 1,085 s
# against about 1,013 s for the three measured apart, and 11% more CPU time.
TF_FIRST := tests/test_interruptions.py tests/test_benchmarks.py tests/test_hybrid_and_momentum.py \
	tests/test_training.py tests/test_distributed_training.py tests/test_losses.py tests/test_readme.py \
	tests/test_full_recipe_jax.py tests/test_budget.py tests/test_quiet.py tests/test_models.py
TF_TESTS := $(TF_FIRST) $(filter-out $(TF_FIRST),$(sort $(wildcard tests/test_*.py)))
JAX_TESTS := tests/test_training.py tests/test_hybrid_and_momentum.py tests/test_losses.py tests/test_augment.py \
	tests/test_models.py tests/test_benchmarks.py
JAX_LEAVES_OUT := not tensorflow_only and not backend_independent and not jax_redundant
TF_LEAVES_OUT := not tensorflow_redundant
NB_APART := notebooks/01_data_and_augmentation.ipynb notebooks/02_encoder_and_heads.ipynb \
	notebooks/03_supcon_loss_derivation.ipynb notebooks/07_accuracy_against_budget.ipynb \
	notebooks/09_ablations.ipynb
NB_ALONE := notebooks/07_accuracy_against_budget.ipynb
NB_CHAINED := $(filter-out $(NB_APART),$(sort $(wildcard notebooks/[0-9]*.ipynb)))
NBMAKE := SUPCON_PROFILE=smoke SUPCON_RUNS_DIR=$(CURDIR)/build/test-runs $(BIN)/python -m pytest -p no:cacheprovider --nbmake

test: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "$(TF_LEAVES_OUT)" $(TF_TESTS)
	rm -rf build/test-runs
	$(MAKE) --no-print-directory -j 3 --output-sync=target test-notebooks-chained test-notebooks-apart \
		test-notebooks-alone
	KERAS_BACKEND=jax $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "$(JAX_LEAVES_OUT)" $(JAX_TESTS)

test-notebooks-chained: setup
	$(NBMAKE) $(NB_CHAINED)
test-notebooks-apart: setup
	$(NBMAKE) $(filter-out $(NB_ALONE),$(NB_APART))
test-notebooks-alone: setup
	$(NBMAKE) $(NB_ALONE)

# The wheel, installed on its own (dependencies from PyPI) and used from outside the checkout.
check-wheel: setup
	$(BIN)/python tools/check_wheel.py

# API reference from the docstrings; build/docs/index.html opens the package page.
docs: setup
	rm -rf build/docs
	MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pdoc --docformat google -o build/docs supcon_lib

# Regenerate every .ipynb from its py:percent source (outputs stripped).
sync-notebooks: setup
	$(BIN)/jupytext --sync notebooks/[0-9]*.py

clean:
	rm -rf build .pytest_cache
