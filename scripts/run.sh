#!/usr/bin/env bash
# `make run`: fetch the model if needed (with progress), start the daemon unless one already
# listens, open the chat, and stop the daemon we started when the chat ends.
set -euo pipefail
cd "$(dirname "$0")/.."
nanollm=bin/nanollm
host=${NANOLLM_HOST:-127.0.0.1:7433}
model=${MODEL:-${NANOLLM_MODEL:-}}
# A vision model's projector (else NANOLLM_MMPROJ, else an mmproj*.gguf beside the model).
mmproj=${MMPROJ:-}
if $nanollm models --host "$host" >/dev/null 2>&1; then
  echo "a daemon already listens at $host; chatting with it" >&2
  exec $nanollm chat --host "$host"
fi
if ! model=$($nanollm pull ${model:+"$model"}); then
  echo "make run: no model to start the daemon with; give a .gguf file you have with MODEL=path/to/model.gguf" >&2
  exit 1
fi
mkdir -p .cache
log=.cache/daemon.log
$nanollm serve --model "$model" ${mmproj:+--mmproj "$mmproj"} --listen "$host" >"$log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
# The daemon prints one machine-readable ready line once it listens (read by the shared helper).
until node scripts/ready-address.mjs "$log" >/dev/null; do
  if ! kill -0 $daemon 2>/dev/null; then
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "daemon started (log: $log)" >&2
$nanollm chat --host "$host"
