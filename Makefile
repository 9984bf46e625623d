# poseaug-pl developer and user commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
# On the project's build machines a local CPU wheel serves exactly this version;
# elsewhere set TORCH_SPEC (e.g. TORCH_SPEC=torch) to take your platform's build.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= outputs/demo

.PHONY: install demo test test-full lint format clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv (if missing) and install the package with dev extras

demo: install ## train a baseline, then PoseAug from it, on the embedded synthetic data; compare
	$(PY) -m poseaug_pl.train experiment=baseline_synthetic hydra.run.dir=$(DEMO_DIR)/baseline
	$(PY) -m poseaug_pl.train experiment=poseaug_synthetic hydra.run.dir=$(DEMO_DIR)/poseaug \
		model.estimator_ckpt=$(DEMO_DIR)/baseline/checkpoints/best.ckpt model.lr.estimator=1e-4
	$(PY) -m poseaug_pl.evaluate ckpt_path=$(DEMO_DIR)/baseline/checkpoints/last.ckpt \
		hydra.run.dir=$(DEMO_DIR)/baseline_last
	$(PY) -m poseaug_pl.evaluate ckpt_path=$(DEMO_DIR)/poseaug/checkpoints/last.ckpt \
		hydra.run.dir=$(DEMO_DIR)/poseaug_last
	@echo "\n== demo: baseline vs PoseAug. synthetic = in-domain test set, synthetic_wild = shifted"
	@echo "   domain. <run> = best.ckpt (chosen on validation), <run>_last = the last epoch."
	@$(PY) scripts/compare_runs.py $(DEMO_DIR)/baseline $(DEMO_DIR)/baseline_last \
		$(DEMO_DIR)/poseaug $(DEMO_DIR)/poseaug_last

test: install ## fast test suite (what CI runs)
	$(PY) -m pytest -m "not slow" -q

test-full: install ## every test, slow ones included
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check src tests scripts benchmarks
	$(PY) -m ruff format --check src tests scripts benchmarks

format: install
	$(PY) -m ruff check --fix src tests scripts benchmarks
	$(PY) -m ruff format src tests scripts benchmarks

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
