# queuegate — see README.md. Kafka and Redis run locally without Docker (scripts/services.sh).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up test bench soak services services-down services-cluster services-cluster-down build check fmt

# The clusters `make services-cluster` starts (scripts/cluster.sh).
CLUSTER_BROKERS := 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
CLUSTER_REDIS := redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002

## up: start Kafka and Redis, build, run `queuegate run` with a demo concert; Ctrl-C stops all
up:
	@scripts/up.sh

## test: check the prerequisites, start Kafka and Redis, single and clustered (reusing running
## ones), install test tools, then every test with cargo-nextest, and after them the api tests
## again on the three-broker Kafka and the Redis Cluster (scripts/test.sh; JUnit reports in
## .local/nextest/)
test:
	@scripts/services.sh check test
	@scripts/services.sh build-deps
	@SETUP=1 CLUSTER_BROKERS=$(CLUSTER_BROKERS) CLUSTER_REDIS=$(CLUSTER_REDIS) scripts/test.sh

## bench: measure on this machine (run by hand); writes docs/benchmarks.md and docs/bench-latency.png
bench:
	@scripts/bench.sh

## soak: the soak alone (SOAK_MINUTES, default 30; make bench runs it too)
soak:
	@scripts/soak.sh

## services: Kafka (KRaft, single node) and Redis (AOF always) in the background
services:
	@scripts/services.sh up

## services-down: stop what `make services` started
services-down:
	@scripts/services.sh down

## services-cluster: a three-broker Kafka (127.0.0.1:19092-19094) and a six-node Redis Cluster
## (127.0.0.1:7000-7005) in the background
services-cluster:
	@scripts/cluster.sh up

## services-cluster-down: stop what `make services-cluster` started
services-cluster-down:
	@scripts/cluster.sh down

build:
	$(CARGO) build --release --locked

## check: formatting and lints (no services needed)
check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt
