# nanollm: `make run` starts the daemon and a chat; `make test` installs, builds and runs every test.
SHELL := /bin/bash
export NODE_LLAMA_CPP_SKIP_DOWNLOAD := true
NODE_MODULES_STAMP := node_modules/.package-lock.json

.PHONY: all install build fixtures test fuzz run bench clean test-asan image image-cuda

all: build

$(NODE_MODULES_STAMP): package.json package-lock.json shared/package.json daemon/package.json cli/package.json test/package.json
	npm ci --no-audit --no-fund
	@touch $@

# The engine addon (daemon/native, C++ over llama.cpp's prebuilt libraries) builds during `npm ci`;
# this rebuilds it when its sources change.
ADDON := daemon/native/build/Release/nanollm.node
$(ADDON): $(NODE_MODULES_STAMP) $(wildcard daemon/native/src/*) daemon/native/binding.gyp daemon/native/build.mjs daemon/native/bundle.mjs daemon/native/mtmd.mjs daemon/native/cpu.mjs
	cd daemon && node native/build.mjs
	@touch $@

install: $(NODE_MODULES_STAMP) $(ADDON)

# Generated protobuf code is not committed: `npm run build` runs buf (from npm) and then tsc -b.
build: install
	npm run build --silent

# Test models are generated (seeded random weights), never downloaded.
fixtures: build
	node test/dist/helpers/makeFixtures.js

test: fixtures
	node --test --test-concurrency=1 test/dist/

# The full fuzz run (CI runs FUZZ_COUNT=2000 inside `make test`).
fuzz: fixtures
	FUZZ_COUNT=10000 node --test test/dist/fuzz.e2e.test.js

# The engine addon under AddressSanitizer + UBSan, driven by the engine's tests (a separate build in
# daemon/native/build-asan; Node itself is not instrumented, so the runtime is preloaded and V8's
# own allocations are not leak-checked).
ASAN_ADDON := daemon/native/build-asan/nanollm.node
test-asan: fixtures
	cd daemon && NANOLLM_SANITIZE=1 NANOLLM_ADDON_OUT=$(CURDIR)/$(ASAN_ADDON) node native/build.mjs
	NANOLLM_ADDON=$(CURDIR)/$(ASAN_ADDON) LD_PRELOAD="$$(g++ -print-file-name=libasan.so) $$(g++ -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  node --test --test-concurrency=1 test/dist/engine.test.js test/dist/chat.e2e.test.js test/dist/stops.e2e.test.js \
	    test/dist/functions.e2e.test.js test/dist/durability.e2e.test.js test/dist/load.e2e.test.js \
	    test/dist/mtmd.test.js test/dist/mmproj.test.js

# Daemon + chat. MODEL=path.gguf (or NANOLLM_MODEL) picks the model; default: fetched once.
# MMPROJ=mmproj.gguf: a vision model's projector (default: an mmproj*.gguf beside the model).
run: build
	@scripts/run.sh

# Benchmarks against llama.cpp (ratios; JSON in bench/results/). The first run builds the peer into
# .cache/peer (~8 min on 2 cores). BENCH_ARGS, e.g. "--threads 1,2 --figures P1,P3 --quick".
bench: build
	node bench/dist/run.js $(BENCH_ARGS)

# Optional: llama.cpp built for this machine's CPU, with OpenMP, from the source inside node-llama-cpp
# (offline, ~6 min on 2 cores; `npm ci` removes it). The daemon then uses it instead of the prebuilt
# binary; its threads (OpenMP) cooperate, so more of them pay. NATIVE_GPU=cuda|vulkan|metal for a GPU.
NATIVE_GPU ?= false
NATIVE_STAMP := node_modules/node-llama-cpp/llama/lastBuild.json
.PHONY: native
native: $(NATIVE_STAMP)
$(NATIVE_STAMP): $(NODE_MODULES_STAMP)
	npx --no node-llama-cpp source download --gpu $(NATIVE_GPU) --noUsageExample
	cd daemon && node native/mtmd.mjs

.PHONY: bench-peer
bench-peer: install
	scripts/build-peer.sh

# Container images (a Docker engine needed; they run `make build` inside and `nanollm serve`).
# docker/compose.yaml runs several daemons behind nginx with their sessions in PostgreSQL.
IMAGE ?= nanollm
image:
	docker build -f docker/Dockerfile -t $(IMAGE) .

image-cuda:
	docker build -f docker/Dockerfile.cuda -t $(IMAGE):cuda .

clean:
	rm -rf node_modules */node_modules */dist *.tsbuildinfo */*.tsbuildinfo shared/src/gen test/fixtures/models daemon/native/build daemon/native/build-mtmd daemon/native/build-cpu daemon/native/build-asan daemon/native/llama
