# Everyday verbs. `make help` lists them.
SHELL := bash
CARGO ?= cargo
# Where `make images` tags the images; the chart's defaults (ghcr.io/hookline, its appVersion).
IMAGE_REGISTRY ?= ghcr.io/hookline
IMAGE_TAG ?=

.PHONY: help demo test test-faults test-node images generate fmt lint chart bench-setup bench-worker bench-operator ci

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# ARGS=--node runs the worker image as a pod, so `make images` comes first then.
demo: $(if $(findstring --node,$(ARGS)),images) ## Run Hookline end to end locally: API server, MiniStack, operator, worker, signed webhooks (ARGS=--keep keeps it up; ARGS=--emulator=localstack on LocalStack; ARGS=--node runs the worker as a pod on a real node, needs root)
	$(CARGO) build -q --workspace --bins
	$(CARGO) run -q -p hookline-demo -- $(ARGS)

test: images ## Run every test: unit tests, the tests against the real API server and emulators, and the images' (make images first)
	$(CARGO) test --workspace

test-faults: ## Run the long fault tests (kills, throttling, network faults; docs/reliability.md): the tests marked #[ignore] (HOOKLINE_FAULT_SEED=n replays a run)
	$(CARGO) test --workspace -- --ignored --skip node_

test-node: images ## Run the tests on a real node (containerd, kubelet, controller-manager, scheduler; docs/testing.md): the #[ignore] tests named node_*, printing their figures; needs root
	tests/node/build.sh >/dev/null
	tests/node/images.sh >/dev/null
	$(CARGO) test --workspace -- --ignored node_ --test-threads=2 --nocapture

# The images' binaries have a cargo profile and target dir of their own (see
# images/build.sh): a cold build costs minutes, a warm one rebuilds only the workspace.
images: ## Build the hookline-operator and hookline-worker images with podman (static binaries; IMAGE_REGISTRY, IMAGE_TAG; archives in target/images/)
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) images/build.sh

generate: ## Regenerate the CRDs (crds/, the chart's templates/crds/), docs/crd-reference.md and the chart README's values table
	$(CARGO) run -q -p hookline-crds --bin crdgen
	$(CARGO) run -q -p hookline-tests --bin chart-docs

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## Check formatting and clippy, as CI does
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

chart: ## Check the Helm chart only: lint, render, install on a new API server, RBAC
	$(CARGO) build -q -p hookline-operator --bins
	$(CARGO) test -p hookline-tests --test chart

bench-setup: ## Build kube-apiserver/etcd, helm, the monitoring CRDs, the emulator venvs (MiniStack, moto, LocalStack), toxiproxy, and fetch ElasticMQ into ~/.cache/hookline (tests do it on demand)
	tests/kube-bench/build.sh
	tests/helm/build.sh
	tests/velocity/build.sh
	tests/promtool/build.sh
	tests/monitoring-crds/gen.sh
	tests/emulators/setup.sh
	tests/elasticmq/setup.sh
	tests/toxiproxy/build.sh

# Both release benchmarks build both binaries: one feature set for the shared
# dependencies, so that neither build recompiles the AWS SDK after the other.
bench-worker: ## Benchmark the release worker against a boto3 loop on ElasticMQ and MiniStack: msgs/s, CPU per 10k msgs, receive-to-handler p50/p99 (MESSAGES=n; HOOKLINE_WORKER_BIN=path)
	$(if $(HOOKLINE_WORKER_BIN),,$(CARGO) build --release -p hookline-operator -p hookline-worker)
	$(CARGO) run -q -p hookline-worker --example throughput -- $(or $(MESSAGES),10000)

bench-operator: ## Benchmark the release operator: N=200 then M=1000 Webhooks, then HOLD=10 minutes at rest (prints figures; HOOKLINE_OPERATOR_BIN=path)
	$(if $(HOOKLINE_OPERATOR_BIN),,$(CARGO) build --release -p hookline-operator -p hookline-worker)
	$(CARGO) run -q -p hookline-operator --example scale -- $(or $(N),200) $(or $(M),1000) $(or $(HOLD),10)

ci: ## What CI runs
	bash .ci/run
