#!/usr/bin/env node
// Committed entry point so npm links `nanollm` at install time, before the build exists.
import "../dist/main.js";
