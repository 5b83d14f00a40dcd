# make demo         set up (once), evaluate the trained demo model (zoom benchmark + bundled samples), compare with blind-tool
# make test         set up (once) and run the test suite
# make test-fast    the tests that need no engine, server, subprocess or browser (minutes)
# make setup        only the environment (.venv), exactly as locked; a second run installs nothing,
#                   a changed lock is synced on the next run
# make lock         re-resolve both routes' locks (requirements/*.lock) after pyproject.toml or an input changed
# make fresh-check  the drift alarm: today's newest allowed versions in a throw-away environment, smoke-tested
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The route: gpu when nvidia-smi sees a device, cpu otherwise (ROUTE=cpu|gpu to choose).
ROUTE  ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo gpu; else echo cpu; fi)
LOCK   := requirements/$(ROUTE).lock
# Nothing is downloaded at run time: models and data come from the cache or the repository.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: setup demo test test-fast regression samples lock fresh-check clean
setup: $(STAMP)

$(STAMP): $(LOCK) requirements/uv.txt pyproject.toml scripts/setup_env.sh
	ROUTE=$(ROUTE) bash scripts/setup_env.sh $(VENV)
	touch $@

demo: setup
	$(OFFLINE) bash scripts/demo.sh $(VENV) results/demo

# CI's regression gate: the demo model on its zoom benchmark against the committed baseline.
regression: setup
	$(OFFLINE) $(VENV)/bin/pr-eval --model demo --tasks zoom --data samples --output results/ci
	$(OFFLINE) $(VENV)/bin/pr-eval check "$$(ls -d results/ci/*/ | sort | tail -1)" \
		--baseline results/reference/demo-zoom.submission.json --max-drop 5

test: setup
	@bash scripts/install_chromium.sh
	$(OFFLINE) $(PY) -m pytest -q

# The pure-logic tier: no engine, server, subprocess or browser (tests/conftest.py marks them).
test-fast: setup
	$(OFFLINE) $(PY) -m pytest -q -m "not engine and not server"

samples: setup
	$(PY) scripts/make_samples.py

# Needs only uv (from the environment, or bootstrapped from requirements/uv.txt without the stack).
lock:
	bash scripts/bootstrap_uv.sh $(VENV)
	$(PY) scripts/lock.py

fresh-check: setup
	$(OFFLINE) $(PY) scripts/fresh_check.py --route $(ROUTE)

clean:
	rm -rf $(VENV) results/demo results/ci
