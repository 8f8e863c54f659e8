#!/usr/bin/env node
// Committed entry point so npm links `nanollm` at install time, before the build exists.
// CommonJS on purpose: it runs before libuv's thread pool starts, the only moment its size can be
// set. llama.cpp decodes on that pool, and with one thread there every decode runs on the same OS
// thread, so an OpenMP build keeps one team of threads instead of one per pool thread, the idle
// teams spinning against the busy one (2 threads, one session: 10.5 → 8.3 ms a token).
if (process.argv[2] === "serve") process.env.UV_THREADPOOL_SIZE ??= "1";
import("../dist/main.js");
