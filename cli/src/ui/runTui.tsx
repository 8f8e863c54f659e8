import React from "react";
import { render } from "ink";
import type { GenerationParams, SessionInfo } from "@nanollm/shared";
import type { NanoClient } from "../client/NanoClient.js";
import { ChatApp } from "./ChatApp.js";

/** Opens the interactive chat and resolves when the user quits. */
export async function runTui(client: NanoClient, session: SessionInfo, params: GenerationParams): Promise<void> {
  const app = render(<ChatApp client={client} session={session} params={params} />, { exitOnCtrlC: false });
  await app.waitUntilExit();
}
