# sweep-fleet: `make demo` runs the local demo, `make test` the whole test suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS := 1
export CONTAINERS_CONF := $(CURDIR)/tests/fleet/containers.conf
export PYTHONPATH := $(CURDIR)/tests
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/.venv/bin:$(PATH)

PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: help root-check bootstrap lint check docs sanity unit fleet-tests molecule test bench demo demo-down image clean

help:
	@echo "make demo       local fleet + W&B stand-in + the 12-shard sweep, printing who ran what"
	@echo "make demo-down  remove the demo's hosts, its W&B stand-in and inventory/demo"
	@echo "make test       bootstrap, lint, unit tests, fleet tests (the whole suite, as CI runs it)"
	@echo "make check      lint and the fast unit tests: the inner loop, about two minutes"
	@echo "make lint       yamllint, ansible-lint, ruff, ansible-test sanity"
	@echo "make bench      deploy.yml against a hand-written baseline, 1 to 24 hosts (not in make test)"

bootstrap:
	@scripts/bootstrap.sh

root-check:
	@if [ "$$(id -u)" -ne 0 ]; then \
	  echo "error: the podman test fleet needs root: run 'sudo make $(MAKECMDGOALS)'" >&2; exit 1; fi

# ansible-lint and ansible-test sanity, the two slow ones, run side by side.
lint: bootstrap
	yamllint --strict .
	ruff check .
	ruff format --check .
	@mkdir -p .cache; ansible-lint > .cache/ansible-lint.log 2>&1 & lint=$$!; \
	scripts/sanity.sh; sanity=$$?; \
	wait $$lint; status=$$?; cat .cache/ansible-lint.log; \
	[ $$sanity -eq 0 ] && [ $$status -eq 0 ]

# The inner loop: lint, then the unit tests that need neither test hosts nor the real
# wandb CLI and agent (those are marked integration and run in make unit and make test).
check: bootstrap
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint && \
	pytest -n $(TEST_WORKERS) -m "not integration" tests/unit $(PYTEST_ARGS) && \
	echo "make check: passed in $$(( $$(date +%s) - start ))s"

# ansible-test sanity on the collection (its own venv; about a minute the first time).
sanity: bootstrap
	scripts/sanity.sh

# docs/variables.md from the argument specs (a unit test fails when it is stale).
docs: bootstrap
	python scripts/docs.py

unit: bootstrap
	pytest tests/unit $(PYTEST_ARGS)

fleet-tests: bootstrap root-check
	pytest tests/e2e $(PYTEST_ARGS)

image: bootstrap root-check
	python -m fleet image

# Two pytest workers, each taking whole test files (a file's tests share one fleet); the
# host image is built first (while the linters run) so that the workers do not both build it.
test: bootstrap root-check
	@start=$$(date +%s); mkdir -p .cache; \
	python -m fleet image > .cache/image.log 2>&1 & image=$$!; \
	$(MAKE) --no-print-directory lint; linted=$$?; \
	wait $$image; built=$$?; cat .cache/image.log; \
	[ $$linted -eq 0 ] && [ $$built -eq 0 ] && \
	pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20 $(PYTEST_ARGS) && \
	echo "make test: passed in $$(( $$(date +%s) - start ))s"

# Not part of make test: deploy.yml against a hand-written baseline for 1, 3, 6, 12 and 24
# hosts (BENCH_SIZES, BENCH_REPS, BENCH_BIG_REPS), results in bench/results/ (about 90 minutes).
bench: bootstrap root-check
	UV_PYTHON_DOWNLOADS=never .tools/bin/uv sync --frozen --python python3 --quiet --group bench
	python bench/bench.py

demo: bootstrap root-check
	python tests/demo.py

demo-down: bootstrap root-check
	python tests/demo.py --down

clean:
	rm -rf .cache .pytest_cache .ruff_cache
