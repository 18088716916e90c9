#!/usr/bin/env bash
# Runs the browser tests (services must be up: `make services`) and copies their screenshots to
# docs/screenshots/, where the README and docs/explain-design.md show them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --test browser -- --test-threads=1
mkdir -p docs/screenshots
cp target/browser/fan/{1-room,2-waiting,3-reconnecting,4-console,5-admitted}.png docs/screenshots/
cp target/browser/scheduled/{1-countdown-ko,2-prequeue-ko}.png docs/screenshots/
ls -l docs/screenshots
