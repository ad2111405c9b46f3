# mlsys-labs — every target installs first when needed (a stamp file, so only once).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/mlsys-labs
STAMP  := $(VENV)/.mlsys-installed
# every lab's dependencies; on a machine with an NVIDIA driver also the CUDA extras
EXTRAS := all$(shell command -v nvidia-smi >/dev/null 2>&1 && echo ,gpu)

.PHONY: install test mutants lab-1 lab-2 lab-3 lab-4 lab-5 lab-6 lab-7 bench gpu-check report starter clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-torch
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	scripts/install-torch $(PY)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)
	@echo "mlsys-labs installed in $(VENV)  (activate: . $(VENV)/bin/activate)"

# The whole suite on the CPU: infrastructure tests and every lab's graded tests.
test: $(STAMP)
	$(PY) -m pytest

# Every lab's mutation catalogue: each realistic learner bug must be caught by the graded tests.
mutants: $(STAMP)
	$(CLI) mutants --jobs 2

lab-1 lab-2 lab-3 lab-4 lab-5 lab-6 lab-7: $(STAMP)
	$(CLI) run $(subst lab-,,$@)

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-only

# On a CUDA machine: every GPU test (a skip is a failure), lab 4's tests compiled for the card, the GPU
# benchmarks of labs 4-6 (8-minute budget); results in benchmarks/results/<gpu>.json and gpu-check-<gpu>.md.
# Runs on the current Python when it has torch with CUDA (installs nothing), else on the venv;
# without CUDA it runs end to end, GPU parts skipped and counted, exit status 3.  Options: GPU_CHECK="--quick".
gpu-check:
	PYTHON="$(PYTHON)" scripts/gpu-check $(GPU_CHECK)

report: $(STAMP)
	$(CLI) report

clean:
	rm -rf .mlsys reports .pytest_cache .hypothesis .benchmarks
