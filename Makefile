# stochopt: the commands the README names. `make bench` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned, so the package's `torch` requirement never pulls the
# multi-GB CUDA build. On this kind of machine pip finds the CPU wheel locally; elsewhere pass
# e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# mutants tested at a time by `make mutants` (each runs its own pytest)
MUTANTS_JOBS ?= 1

.PHONY: setup bench test speed mutants docs clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > $(VENV)/constraints.txt  # extras must never replace this torch
	$(BIN)/python -m pip install --quiet -e ".[all]" -c $(VENV)/constraints.txt
	touch $@

bench: setup  ## the main job: the default suite (about 3 minutes), report in results/default
	$(BIN)/stochopt bench

test: setup  ## lint, then the test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

mutants: setup  ## mutation check, not part of `test` (slow): every curated bug must be caught (docs/mutants.md)
	$(BIN)/python benchmarks/mutants/run.py -j $(MUTANTS_JOBS)

speed: setup  ## optimizer step time and first step against the anchors (results go in docs/performance.md)
	$(BIN)/python benchmarks/step_time.py
	$(BIN)/python benchmarks/first_step.py

docs: setup  ## the documentation site, into site/ (strict: a broken link or docstring fails it)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
