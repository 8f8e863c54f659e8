#!/usr/bin/env bash
# Builds the benchmark peer (llama.cpp's llama-server, llama-bench, llama-batched-bench, llama-mtmd-cli) once into
# .cache/peer/, from the same llama.cpp source node-llama-cpp bundles, so both sides run the same
# engine. Idempotent: builds only the binaries that are missing. ~8 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
peer=.cache/peer
bin=$peer/build/bin
targets=(llama-server llama-bench llama-batched-bench llama-mtmd-cli)
jobs=${PEER_JOBS:-2}

have_all() {
  for t in "${targets[@]}"; do [[ -x $bin/$t ]] || return 1; done
}
if have_all; then
  echo "peer: already built in $bin" >&2
  exit 0
fi

mkdir -p "$peer"
# One build at a time: a second `make bench` waits for the first instead of building alongside it.
exec 9>"$peer/.lock"
if ! flock -n 9; then
  echo "peer: another build is running; waiting for it" >&2
  flock 9
fi
if have_all; then
  echo "peer: already built in $bin" >&2
  exit 0
fi

bundle=node_modules/node-llama-cpp/llama/gitRelease.bundle
if [[ ! -f $bundle ]]; then
  echo "peer: $bundle is missing; run 'make install' first" >&2
  exit 1
fi
if [[ ! -d $peer/src/.git ]]; then
  echo "peer: cloning llama.cpp from $bundle" >&2
  rm -rf "$peer/src"
  git -c advice.detachedHead=false clone --quiet "$bundle" "$peer/src"
fi
echo "peer: llama.cpp $(git -C "$peer/src" rev-parse --short HEAD)" >&2

echo "peer: configuring (cmake Release, native CPU)" >&2
cmake -S "$peer/src" -B "$peer/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF >"$peer/cmake.log" 2>&1 \
  || { tail -n 30 "$peer/cmake.log" >&2; exit 1; }

start=$SECONDS
echo "peer: building ${targets[*]} with -j$jobs (takes minutes; log: $peer/build.log)" >&2
cmake --build "$peer/build" --config Release -j"$jobs" --target "${targets[@]}" 2>&1 \
  | tee "$peer/build.log" | grep --line-buffered -E '^\[ *[0-9]+%\] (Built|Linking)' >&2 \
  || true
if ! have_all; then
  tail -n 30 "$peer/build.log" >&2
  echo "peer: build failed" >&2
  exit 1
fi
echo "peer: built in $((SECONDS - start)) s: $bin" >&2
