#!/bin/sh
# Runs the SDK tests: the official `openai` and `@anthropic-ai/sdk` npm packages against a real umbra.
# UMBRA_BIN selects the binary (default ../../build/umbra).
set -eu
cd "$(dirname "$0")"
if [ ! -d node_modules/openai ]; then
	npm ci --no-audit --no-fund
fi
exec node --test --test-concurrency=1 --test-timeout=120000 openai.test.mjs auth.test.mjs providers.test.mjs "$@"
