import assert from "node:assert/strict";
import { NanoError } from "@nanollm/shared";

/** Asserts the promise fails with `code` and a one-sentence message matching `pattern`. */
export async function rejectsWith(p: Promise<unknown>, code: NanoError["code"], pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof NanoError, `expected a NanoError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes("\n    at "), "no stack trace reaches the user");
    return true;
  });
}
