import assert from "node:assert/strict";
import { NanoError } from "@nanollm/shared";

/** Asserts the promise fails with `code` and a one-sentence message matching `pattern`. */
export async function rejectsWith(p: Promise<unknown>, code: NanoError["code"], pattern: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof NanoError, `expected a NanoError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes("\n    at "), "no stack trace reaches the user");
    return true;
  });
}

/** An error whose message is one sentence: one line ending in a full stop. */
export const oneSentence = (e: unknown) => e instanceof Error && !/\n/.test(e.message) && /[.]$/.test(e.message);
