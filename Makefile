# Everything installs itself: `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The real TF Serving clients live in their own virtualenvs: tensorflow must never be importable by the daemon,
# and TF's protos clash with ours in one process. Tests run them in subprocesses.
TFS_VENV := .venv-tfs
OVMSCLIENT_VENV := .venv-ovmsclient
# tritonclient (the KServe v2 client) needs protobuf < 7, our generated code protobuf >= 7.
TRITON_VENV := .venv-triton
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: venv venv-clients demo demo-models test lint protos clean systemd-tools image deploy-tools

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

venv-clients: $(TFS_VENV)/.installed $(OVMSCLIENT_VENV)/.installed $(TRITON_VENV)/.installed
$(TFS_VENV)/.installed: tests/clients/requirements-tfs.txt
	test -x $(TFS_VENV)/bin/python || $(PYTHON) -m venv $(TFS_VENV)
	$(TFS_VENV)/bin/pip install $(PIP_FLAGS) -r tests/clients/requirements-tfs.txt
	touch $@
$(OVMSCLIENT_VENV)/.installed: tests/clients/requirements-ovmsclient.txt
	test -x $(OVMSCLIENT_VENV)/bin/python || $(PYTHON) -m venv $(OVMSCLIENT_VENV)
	$(OVMSCLIENT_VENV)/bin/pip install $(PIP_FLAGS) -r tests/clients/requirements-ovmsclient.txt
	touch $@
$(TRITON_VENV)/.installed: tests/clients/requirements-triton.txt
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install $(PIP_FLAGS) -r tests/clients/requirements-triton.txt
	touch $@

demo-models: venv
	$(BIN)/python sample_configs/build_demo_models.py sample_configs/demo_models

demo: demo-models
	@$(BIN)/python sample_configs/build_demo_models.py --usage
	exec $(BIN)/ovmsctl start --foreground --config sample_configs/demo.yaml --bind-address 127.0.0.1 --rest-port 8000

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint deploy/Containerfile

test: venv venv-clients lint systemd-tools deploy-tools
	$(BIN)/python -m pytest -ra

# tests/test_systemd.py verifies the generated unit with systemd-analyze (skipped, with the reason, without it)
systemd-tools:
	@command -v systemd-analyze >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null; } || echo "note: systemd-analyze missing; the unit verification test will be skipped"

# The container image (deploy/Containerfile, built by deploy/image.py with podman): make image [IMAGE=name:tag]
# [IMAGE_BASE=docker.io/library/python:3.11-slim-bookworm]; without IMAGE_BASE the base is made here with mmdebstrap.
IMAGE ?= localhost/ovmsctl:latest
IMAGE_BASE ?=
image: venv deploy-tools
	$(BIN)/python deploy/image.py build --tag $(IMAGE) $(if $(IMAGE_BASE),--base $(IMAGE_BASE))

# podman, runc and mmdebstrap for the image (tests/test_container.py), haproxy for the fleet rehearsal
# (benchmarks/fleet.py); each test that needs a missing one is skipped, with the reason
DEPLOY_TOOLS := podman runc mmdebstrap haproxy
deploy-tools:
	@missing=$$(for t in $(DEPLOY_TOOLS); do command -v $$t >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null 2>&1 || echo $$t; done); \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } || echo "note: missing" $$missing"; the tests that need them will be skipped"

protos: venv
	$(BIN)/python schemas/compile.py

clean:
	rm -rf $(VENV) $(TFS_VENV) $(OVMSCLIENT_VENV) $(TRITON_VENV) sample_configs/demo_models .pytest_cache
