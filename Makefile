# poseaug-pl developer and user commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
# On the project's build machines a local CPU wheel serves exactly this version;
# elsewhere set TORCH_SPEC (e.g. TORCH_SPEC=torch) to take your platform's build.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= outputs/demo
# (the demo's runs go to fixed folders: overwrite=true replaces an earlier demo's runs there)
# Estimator budget of `make demo` (>= 2): the control trains 2 x DEMO_EPOCHS epochs on real
# pairs; Variant A and PoseAug make as many estimator passes: DEMO_EPOCHS - 1 epochs of the
# released phases (an augmented and a real pass each), then 2 real-data finish epochs.
DEMO_EPOCHS ?= 4
# Data size of `make demo`: full (100 training sequences x 4 cameras x 200 frames: 80k pairs) or
# small (40 sequences: 32k pairs, about half the time; the gain still shows, smaller).
DEMO_SIZE ?= full
DEMO_DATA = $(if $(filter small,$(DEMO_SIZE)),data.train_sequences=40,)
DEMO_CONTROL_EPOCHS = $(shell echo $$((2 * $(DEMO_EPOCHS))))
DEMO_AUG_EPOCHS = $(shell echo $$(($(DEMO_EPOCHS) + 1)))
DEMO_BASE = model.estimator_ckpt=$(DEMO_DIR)/baseline/checkpoints/last.ckpt model.lr.estimator=1e-4
DEMO_AUG = model.augmentor_ckpt=$(DEMO_DIR)/augmentor/checkpoints/last.ckpt schedule=epoch_phases \
	model.warmup_epochs=0 trainer.max_epochs=$(DEMO_AUG_EPOCHS) model.real_finish_epochs=2

.PHONY: install demo notebooks test test-full lint format clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,sweep,export,datasets]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv (if missing) and install the package with the dev, sweep, export and datasets extras

demo: install ## the real-data protocol at synthetic size: baseline, augmentor pretraining, control / Variant A / PoseAug (DEMO_SIZE=small: about 2.5x faster)
	@test $(DEMO_EPOCHS) -ge 2 2>/dev/null || { echo "error: DEMO_EPOCHS must be an integer >= 2 (one augmented epoch before the 2 real-data finish epochs), got '$(DEMO_EPOCHS)'"; exit 2; }
	@test "$(DEMO_SIZE)" = full -o "$(DEMO_SIZE)" = small || { echo "error: DEMO_SIZE must be full or small, got '$(DEMO_SIZE)'"; exit 2; }
	@echo "== make demo (DEMO_SIZE=$(DEMO_SIZE)): about $(if $(filter small,$(DEMO_SIZE)),4,9) minutes on 2 idle CPU cores, longer on a busy machine (each stage prints its own estimate after its first epoch)"
	@echo "== 1/5 baseline: 24 epochs on real pairs"
	$(PY) -m poseaug_pl.train overwrite=true experiment=baseline_synthetic hydra.run.dir=$(DEMO_DIR)/baseline \
		test_ckpt=last $(DEMO_DATA)
	@echo "== 2/5 augmentor pretraining: 10 epochs (augmentor and discriminators only)"
	$(PY) -m poseaug_pl.train overwrite=true experiment=augmentor_synthetic hydra.run.dir=$(DEMO_DIR)/augmentor \
		$(DEMO_DATA)
	@echo "== 3/5 control: the baseline + $(DEMO_CONTROL_EPOCHS) epochs on real pairs only"
	$(PY) -m poseaug_pl.train overwrite=true experiment=baseline_synthetic hydra.run.dir=$(DEMO_DIR)/control \
		experiment_name=control_synthetic $(DEMO_BASE) trainer.max_epochs=$(DEMO_CONTROL_EPOCHS) \
		test_ckpt=last $(DEMO_DATA)
	@echo "== 4/5 Variant A (augmentation without feedback): the baseline + $(DEMO_AUG_EPOCHS) epochs, as many estimator updates"
	$(PY) -m poseaug_pl.train overwrite=true experiment=variant_a_synthetic hydra.run.dir=$(DEMO_DIR)/variant_a \
		$(DEMO_BASE) $(DEMO_AUG) test_ckpt=last $(DEMO_DATA)
	@echo "== 5/5 PoseAug: the baseline + $(DEMO_AUG_EPOCHS) epochs, as many estimator updates"
	$(PY) -m poseaug_pl.train overwrite=true experiment=poseaug_synthetic hydra.run.dir=$(DEMO_DIR)/poseaug \
		$(DEMO_BASE) $(DEMO_AUG) test_ckpt=last $(DEMO_DATA)
	@echo "\n== demo: control (real pairs only) vs Variant A vs PoseAug, equal estimator updates,"
	@echo "   each at its last epoch. synthetic = in-domain test set, synthetic_wild = shifted domain."
	@$(PY) -m poseaug_pl.compare $(DEMO_DIR)/baseline $(DEMO_DIR)/control $(DEMO_DIR)/variant_a \
		$(DEMO_DIR)/poseaug --reference $(DEMO_DIR)/control
	@echo "figures: $(DEMO_DIR)/*/figures   notebooks: notebooks/01_augmentations.ipynb, 02_compare_runs.ipynb (make notebooks runs both, writing $(DEMO_DIR)/notebooks/)"

notebooks: install ## run both notebooks headless on `make demo`'s runs (DEMO_DIR); the executed copies go to DEMO_DIR/notebooks/ (the committed files stay without outputs)
	@mkdir -p $(DEMO_DIR)/notebooks
	POSEAUG_DEMO_DIR=$(abspath $(DEMO_DIR)) $(VENV)/bin/jupyter-execute --timeout=600 \
		--output='$(abspath $(DEMO_DIR))/notebooks/{notebook_name}' \
		notebooks/01_augmentations.ipynb notebooks/02_compare_runs.ipynb
	@echo "executed notebooks (with their outputs and figures): $(DEMO_DIR)/notebooks/"

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
