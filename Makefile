# nanollm: `make run` starts the daemon and a chat; `make test` installs, builds and runs every test.
SHELL := /bin/bash
export NODE_LLAMA_CPP_SKIP_DOWNLOAD := true
NODE_MODULES_STAMP := node_modules/.package-lock.json

.PHONY: all install build fixtures test run bench clean

all: build

$(NODE_MODULES_STAMP): package.json package-lock.json shared/package.json daemon/package.json cli/package.json test/package.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NODE_MODULES_STAMP)

# Generated protobuf code is not committed: `npm run build` runs buf (from npm) and then tsc -b.
build: install
	npm run build --silent

# Test models are generated (seeded random weights), never downloaded.
fixtures: build
	node test/dist/helpers/makeFixtures.js

test: fixtures
	node --test --test-concurrency=1 test/dist/

# Daemon + chat. MODEL=path.gguf (or NANOLLM_MODEL) picks the model; default: fetched once.
run: build
	@scripts/run.sh

clean:
	rm -rf node_modules */node_modules */dist *.tsbuildinfo */*.tsbuildinfo shared/src/gen test/fixtures/models
