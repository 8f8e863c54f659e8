import OpenAI from "openai";
import type { TestDaemon } from "./daemon.js";
import type { RunningDaemon } from "@nanollm/daemon";

/** The daemon's HTTP base URL (the test started it with `http`). */
export function httpBase(d: { daemon: RunningDaemon }): string {
  if (!d.daemon.http) throw new Error("this daemon serves no HTTP APIs; start it with { http: {} }");
  return `http://${d.daemon.http.address}`;
}

/** The official OpenAI client pointed at the daemon; no retries, so an error is seen as it is. */
export function openaiClient(d: TestDaemon & { daemon: RunningDaemon }, headers: Record<string, string> = {}): OpenAI {
  return new OpenAI({ baseURL: `${httpBase(d)}/v1`, apiKey: "unused", maxRetries: 0, defaultHeaders: headers });
}

/** POSTs a JSON body (or raw text) and returns the status, headers and parsed body. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as Record<string, unknown> };
}

/** Words that make one user message per turn, different for each chat and turn. */
export function userText(chat: number, turn: number): string {
  const words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "tree", "sun", "day", "happy", "story"];
  return Array.from({ length: 6 + (turn % 4) }, (_, i) => words[(chat * 7 + turn * 3 + i) % words.length]).join(" ") + ` (chat ${chat}, turn ${turn})`;
}
