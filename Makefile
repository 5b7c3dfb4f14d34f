# charrnn — set up, test, demo, benchmark.
#
#   make demo     install, get Tiny Shakespeare, train ~2 minutes, stream a sample
#   make test     install and run the test suite (CI runs exactly this)
#   make bench    speed and memory vs plain PyTorch (~4 min; bench-quick: under 2 min)
#
# torch is installed first, on its own, so you choose the build (the README has a table):
#   make demo                                                                 (pip's own index: on Linux from PyPI
#                                                                              that is the CUDA build, on macOS CPU + MPS)
#   make demo TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"    (the CPU build)
#   make demo TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"  (the build for CUDA 12.8)

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
# Where `charrnn corpus get` copies corpora from instead of downloading them (empty = download).
CHARRNN_MIRROR ?= $(wildcard ../shared/corpora)
export CHARRNN_MIRROR

BIN := $(VENV)/bin
DEMO_TIME ?= 120

.PHONY: install test demo bench bench-quick clean

install: $(VENV)/.installed

# setuptools tells how an editable install of this flat layout finds the package with a warning,
# "Editable installation. ... folders in your working directory with the same name ...", for want
# of another way to inform; recent pip shows build-backend warnings even with --quiet. Only that
# one is silenced (PYTHONWARNINGS matches the start of its message); any other still shows.

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e ".[test,serve]"
	touch $@

test: install
	$(BIN)/python -m pytest

# After the sample: the next commands to try (tests/test_docs.py runs them, as it runs the README's).
demo: install
	$(BIN)/charrnn corpus get shakespeare
	$(BIN)/charrnn train shakespeare --time $(DEMO_TIME) -o checkpoints/demo --overwrite
	@echo
	$(BIN)/charrnn sample checkpoints/demo --temp 0.8 -n 1200 --prime "ROMEO:" --seed 7
	@echo
	@echo
	@echo 'Next: put charrnn on your PATH (in each new shell; or: source .venv/bin/activate), then try'
	@echo '  export PATH="$$PWD/.venv/bin:$$PATH"'
	@echo '  charrnn sample checkpoints/demo --prime "JULIET:" --temp 0.5 -n 500'
	@echo '  charrnn beam checkpoints/demo --prime "ROMEO:" -n 200'
	@echo '  charrnn checkpoints export checkpoints/demo -o demo.html    # then open demo.html in a browser'
	@echo 'More in README.md.'

# Speed and memory against plain PyTorch, as ratios measured in the same run (an idle machine, please).
bench: install
	$(BIN)/charrnn bench --json bench/results.json

bench-quick: install
	$(BIN)/charrnn bench --quick --json bench/results-quick.json

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
