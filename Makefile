# FaaSTrainGym — the two commands are `make train` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP_QUIET ?= -q

.PHONY: setup train test test-fast lint ui render golden bench bench-runtime bench-zoo clean services reliability

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) -e '.[dev,bench]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, gymnasium, hera, mlflow, redis, boto3" && touch $(STAMP)

setup: $(STAMP)

services:
	@scripts/ensure-services.sh

## Run the default A/B sweep (2 PPO configs x 3 seeds on CartPole-v1) on the embedded engine.
train: setup
	$(PY) workflows/ppo_sweep.py submit --config sweeps/cartpole_ab.yaml

## The test suite (unit, integration against real Redis and an S3-protocol server, end-to-end learning),
## in random order (pytest-randomly). The end of the output names the order's seed, e.g.
## `test order: --randomly-seed=1234`; replay that order with
##   make test PYTEST_ARGS="--randomly-seed=1234"
## (`--randomly-seed=last` replays the previous local run). Exit code 5 (no tests collected) fails.
PYTEST_ARGS ?=
test: setup services
	$(PY) -m pytest -q -p randomly $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

## Unit tests only: no Redis, S3 server, HTTP server or CLI subprocess, and no learning runs.
test-fast: setup
	$(PY) -m pytest -q -p randomly -m "not integration and not slow" $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

## ruff (lint rules and formatting) and mypy (strict on ftg_common), as CI runs them.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlruns --host 127.0.0.1 --port 5000

## The local OpenFaaS-compatible gateway (functions/stack.yml as replica processes that scale by its labels);
## /system/* needs basic auth as admin (FTG_GATEWAY_PASSWORD, else the password in .ftg/gateway-password).
GATEWAY_PORT ?= 8080
.PHONY: gateway
gateway: setup
	$(PY) -m workflows.gateway.server --port $(GATEWAY_PORT)

## Kubernetes, single node: MinIO (+ bucket Job), Redis, MLflow on PostgreSQL, Prometheus, the Argo
## templates and the agent's RBAC. Argo Workflows and OpenFaaS come first (README "On a cluster").
.PHONY: deploy
deploy:
	kubectl apply -k manifests/overlays/dev

## The four function images from functions/Dockerfile, tagged as functions/stack.yml names them, and the
## sweep driver's from workflows/Dockerfile.driver, tagged as manifests/driver names it (tests keep them equal);
## needs a Docker daemon. Push them, then deploy: docs/cluster-openfaas.md.
FUNCTION_IMAGES := rollout-collector reward-aggregator policy-updater policy-evaluator
IMAGE_PREFIX    := ghcr.io/faastraingym/
IMAGE_TAG       := 0.1.0
.PHONY: images
images:
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker daemon reachable (docker info failed): start one, or set DOCKER_HOST" >&2; exit 1; }
	$(foreach f,$(FUNCTION_IMAGES),docker build -f functions/Dockerfile --build-arg FUNCTION=$(subst -,_,$(f)) -t $(IMAGE_PREFIX)$(f):$(IMAGE_TAG) . &&) true
	docker build -f workflows/Dockerfile.driver -t $(IMAGE_PREFIX)driver:$(IMAGE_TAG) .

render: setup
	$(PY) workflows/ppo_sweep.py render --output iteration-template.yaml

## The golden templates under tests/golden and the WorkflowTemplates kustomize applies (manifests/argo),
## rendered from the code; tests keep both equal to it.
golden: setup
	$(PY) -m workflows.iteration --write-golden
	$(PY) workflows/ppo_sweep.py render -o manifests/argo/iteration-template.yaml
	$(PY) workflows/ppo_sweep.py render --off-policy -o manifests/argo/offpolicy-iteration-template.yaml
	$(PY) workflows/ppo_sweep.py render --chain -o manifests/argo/iteration-chain-template.yaml
	$(PY) workflows/ppo_sweep.py render --off-policy --chain -o manifests/argo/offpolicy-iteration-chain-template.yaml

## SB3 vs FaaSTrainGym, PPO (with where each iteration's time goes) and DQN, then start-up and
## wind-down of `submit`.
bench: setup
	$(PY) benchmarks/bench_ppo_cartpole.py
	$(PY) benchmarks/bench_dqn_cartpole.py
	$(PY) benchmarks/bench_startup.py

## The serverless runtime: burst scale-out over replica caps 1..64 (a latency-bound env), replicas over
## time and speed-up (PNG, also in MLflow), gateway per-call overhead, the sweep through the gateway vs
## embedded, cold starts -> benchmarks/results/<date>-runtime.{md,json,png}. About 10 minutes;
## BENCH_RUNTIME_ARGS=--quick for a smoke run.
BENCH_RUNTIME_ARGS ?=
bench-runtime: setup
	$(PY) benchmarks/bench_runtime.py $(BENCH_RUNTIME_ARGS)

## SB3 vs FaaSTrainGym on the five classic-control RL Zoo PPO entries, 3 seeds, the Zoo's budgets ->
## benchmarks/results/<date>-zoo-classic-control.{md,json}. Over an hour on 2 CPUs;
## BENCH_ZOO_ARGS="--steps Acrobot-v1=200000,MountainCar-v0=200000" reduces budgets (the record says so).
BENCH_ZOO_ARGS ?=
bench-zoo: setup
	$(PY) benchmarks/bench_zoo.py $(BENCH_ZOO_ARGS)

## Argo's orchestration latency, simulated (docs/argo-latency.md): the default sweep on Argo for K = 1, 4, 16
## iterations per Workflow with Argo's default and the shipped 1 s controller settings, and in hybrid mode
## -> benchmarks/results/<date>-argo-latency.{md,json}. About 20 s (the compute per level is measured).
BENCH_ARGO_ARGS ?=
.PHONY: bench-argo
bench-argo: setup
	$(PY) benchmarks/bench_argo_latency.py $(BENCH_ARGO_ARGS)

## Cold-start policies (docs/coldstart-report.md): trains sweeps/coldstart.yaml (Q-learning, DQN, PPO x 5
## seeds) and compares the greedy policies with on-demand, fixed keep-alive, hybrid-histogram and HPA-like
## baselines on held-out days -> benchmarks/results/<date>-coldstart-policies.{md,json,png} + MLflow.
## About 5 minutes on 2 CPUs; BENCH_COLDSTART_ARGS="--seeds 0,1 --total-steps 9600" for a smoke run.
BENCH_COLDSTART_ARGS ?=
.PHONY: bench-coldstart
bench-coldstart: setup
	$(PY) benchmarks/bench_coldstart_policies.py $(BENCH_COLDSTART_ARGS)

## The reliability suite: hostile input, faults, kills, corruption -> benchmarks/results/reliability-<date>.md
reliability: setup services
	$(PY) -m benchmarks.reliability.run

clean:
	rm -rf .ftg mlruns mlflow.db .pytest_cache
