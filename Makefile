# queuegate — see README.md. Kafka and Redis run locally without Docker (scripts/services.sh).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up test bench services services-down build check fmt

## up: start Kafka and Redis, build, run `queuegate run` with a demo concert; Ctrl-C stops all
up:
	@scripts/up.sh

## test: start Kafka and Redis (reusing running ones), install test tools, then every test
test: services
	@scripts/services.sh tools
	$(CARGO) test --all-targets --locked -- --test-threads=2

## bench: measure on this machine (run by hand); writes docs/benchmarks.md and docs/bench-latency.png
bench:
	@scripts/bench.sh

## services: Kafka (KRaft, single node) and Redis (AOF always) in the background
services:
	@scripts/services.sh up

## services-down: stop what `make services` started
services-down:
	@scripts/services.sh down

build:
	$(CARGO) build --release --locked

## check: formatting and lints (no services needed)
check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt
