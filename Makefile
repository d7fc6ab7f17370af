# Two entry points (see README): `make demo` and `make test`. Both set up what they need from scratch and
# reuse what is already there (the venv, the OPA binary built from source with Go).
SHELL := /bin/bash
OPA_VERSION := v1.22.2
VENV := .venv
INSTALLED := $(VENV)/.installed
OPA := .tools/opa
OPA_STAMP := .tools/opa-$(OPA_VERSION)
# The Temporal server the pinned temporal CLI embeds (`temporal --version`: Server 1.32.0), for the TLS and topology
# tests (tests/temporal_server.py): the CLI's dev server cannot serve TLS.
TEMPORAL_SERVER_VERSION := v1.32.0
TEMPORAL_SERVER_DIR := .tools/temporal-server-$(TEMPORAL_SERVER_VERSION)
TEMPORAL_SERVER_STAMP := $(TEMPORAL_SERVER_DIR)/built

.PHONY: setup demo test lint unit bench lock temporal-server wheel

setup: $(INSTALLED) $(OPA_STAMP)

# Installs exactly what requirements.lock pins (versions and hashes), so an upstream release cannot change a
# fresh clone; the project itself goes in editable, without build isolation, with the locked setuptools.
$(INSTALLED): pyproject.toml setup.py requirements.lock
	@command -v python3.11 >/dev/null || { echo "python3.11 is required"; exit 1; }
	test -x $(VENV)/bin/python || python3.11 -m venv $(VENV)
	$(VENV)/bin/pip install -q --require-hashes --no-deps -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Deliberately move the pins: resolve pyproject.toml's ranges (dev extra and build backend included) to the newest
# versions, with hashes. Review the diff, run `make test`, commit requirements.lock.
lock:
	test -x .tools/lock-venv/bin/pip-compile || { python3.11 -m venv .tools/lock-venv && \
		.tools/lock-venv/bin/pip install -q 'pip-tools==7.7.0'; }
	.tools/lock-venv/bin/pip-compile -q --upgrade --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-find-links --no-emit-index-url --extra dev --build-deps-for wheel --build-deps-for editable \
		-o requirements.lock pyproject.toml

# OPA is not on PyPI: build the pinned release with Go into .tools/ (a few minutes once, then reused).
$(OPA_STAMP):
	@command -v go >/dev/null || { echo "Go is required to build OPA $(OPA_VERSION) (or put an opa binary at $(OPA))"; exit 1; }
	mkdir -p .tools
	cd /tmp && GOBIN=$(CURDIR)/.tools go install github.com/open-policy-agent/opa@$(OPA_VERSION)
	$(OPA) version | grep -q "Version: $(OPA_VERSION:v%=%)"
	touch $@

# The Temporal server and its SQL tool (schema setup), built from source like OPA: once, then reused.
temporal-server: $(TEMPORAL_SERVER_STAMP)
$(TEMPORAL_SERVER_STAMP):
	@command -v go >/dev/null || { echo "Go is required to build the Temporal server $(TEMPORAL_SERVER_VERSION)"; exit 1; }
	mkdir -p $(TEMPORAL_SERVER_DIR)
	cd /tmp && GOBIN=$(CURDIR)/$(TEMPORAL_SERVER_DIR) go install go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION) \
		go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)
	$(TEMPORAL_SERVER_DIR)/server --help >/dev/null && $(TEMPORAL_SERVER_DIR)/sql --help >/dev/null
	touch $@

# An installable wheel in dist/: one top-level package (autonomy_controller) carrying the default configuration and
# the shipped policies compiled to WebAssembly, so an installed `autonomy` needs no opa until its policies change.
wheel: setup
	rm -rf build/prebuilt && $(VENV)/bin/python -m autonomy_controller.controller.decision.engines.wasm_cache --prebuild policies build/prebuilt
	$(VENV)/bin/pip wheel -q --no-deps --no-build-isolation -w dist .

demo: $(INSTALLED)
	$(VENV)/bin/autonomy demo

# The Rego too: OPA's formatting, strict checks, and a type check of every policy's use of `input` against the
# input document's JSON Schema (tests, which build malformed inputs on purpose, are left out of that one).
lint: $(INSTALLED) $(OPA_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	mkdir -p build/typing && ln -sfn $(CURDIR) build/typing/autonomy_controller
	$(VENV)/bin/mypy -p autonomy_controller.controller -p autonomy_controller.actions -p autonomy_controller.workflows
	$(OPA) fmt --diff --fail policies examples/policies
	$(OPA) check --strict policies examples/policies
	$(OPA) check --strict --schema schema/input.schema.json --ignore '*_test.rego' policies examples/policies

# The ledger's tests also run on PostgreSQL: .ci/postgres.sh installs (Debian) and starts one when missing.
# As root, the lab's Debian packages (nginx + ModSecurity + CRS, nftables, iproute2, curl, Suricata 7 from
# bookworm-backports), OpenLDAP's slapd and Samba's AD DC (the identity adapter's tests) and headless Chromium
# with its driver (the HTML reports' screenshot tests, the inbox's browser tests) are installed here, at setup,
# so the enforcement, lab and report tests run on the real things and nothing is fetched at test time (without
# root they skip, saying so).
unit: setup $(TEMPORAL_SERVER_STAMP)
	if [ "$$(id -u)" = 0 ]; then bash .ci/nftables.sh && bash .ci/chromium.sh && \
		$(VENV)/bin/python -c 'from autonomy_controller.controller.lab import ensure_packages; print("lab packages:", ensure_packages() or "all present")' && \
		$(VENV)/bin/python -c 'from autonomy_controller.controller.lab.directory_packages import ensure_slapd; ensure_slapd()' && \
		$(VENV)/bin/python -c 'from autonomy_controller.controller.lab.directory_packages import ensure_samba; ensure_samba()'; fi
	url="$${AUTONOMY_TEST_POSTGRES_URL:-$$(bash .ci/postgres.sh)}" && \
	AUTONOMY_TEST_POSTGRES_URL="$$url" $(VENV)/bin/pytest -q -ra

test: setup lint unit

bench: setup
	$(VENV)/bin/python -m bench.cli_startup
	$(VENV)/bin/python -m bench.guard
	$(VENV)/bin/python -m bench.simulate
	$(VENV)/bin/python -m bench.attackers
	$(VENV)/bin/python -m bench.http
	set -o pipefail; $(VENV)/bin/python -m bench.loop 2>&1 | grep -v 'Workflow task duration exceeded'
	url="$${AUTONOMY_TEST_POSTGRES_URL:-$$(bash .ci/postgres.sh 2>/dev/null || true)}" && AUTONOMY_TEST_POSTGRES_URL="$$url" $(VENV)/bin/python -m bench.scale
	if [ "$$(id -u)" = 0 ]; then $(VENV)/bin/python -m bench.lab; else echo 'bench.lab skipped: the lab needs root'; fi
	if [ "$$(id -u)" = 0 ]; then $(VENV)/bin/python -m bench.triage --run-replay --live; else echo 'bench.triage skipped: the lab needs root'; fi
