# The README's two commands: `make run` starts the app, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8501
MLFLOW_PORT ?= 5000

.PHONY: setup setup-ray run test test-fast bench mlflow clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# No GPU here: take the CPU build of torch first (an unpinned torch would pull a multi-GB CUDA build).
	@if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

# The optional ray backend (docs/cluster.md): Ray's job client and `ray start`.
$(VENV)/.ray-installed: $(VENV)/.installed requirements-ray.txt
	$(PY) -m pip install -q -r requirements-ray.txt
	touch $@

setup-ray: $(VENV)/.ray-installed

# On any address but 127.0.0.1 the app asks for sign-in (docs/sharing.md); NO_AUTH=1 shares it without, on purpose.
run: setup
	$(PY) -m core app --host $(HOST) --port $(PORT) $(if $(NO_AUTH),--no-auth)

# Two workers, a test file each at a time: a file's servers, clusters and browser are started once, and one
# worker's waits on its runs' processes leave the cores to the other.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not browser and not slow"

# The MLflow UI over the lab's tracking store (artifacts/mlflow.db, or MLFLOW_TRACKING_URI's).
mlflow: setup
	$(PY) -m core mlflow-ui --host $(HOST) --port $(MLFLOW_PORT)

bench: setup
	$(PY) bench/accuracy.py --preset offline-quick

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
