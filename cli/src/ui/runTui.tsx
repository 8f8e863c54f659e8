import { render } from "ink";
import type { CreateSessionRequest, GenerationParams, SessionInfo } from "@nanollm/shared";
import type { NanoClient } from "../client/NanoClient.js";
import { createChat } from "./createChat.js";
import { defaultHistoryFile } from "./input/InputHistory.js";
import { renderMarkdown } from "./markdown/renderMarkdown.js";

// Bracketed paste: the terminal marks pasted text, so its line breaks stay in the message.
const PASTE_ON = "\x1b[?2004h";
const PASTE_OFF = "\x1b[?2004l";

/**
 * Opens the interactive chat and resolves when the user quits. `fresh`: the session was created
 * for this chat (it is deleted at the end if no message was sent).
 */
export async function runTui(client: NanoClient, session: SessionInfo, params: GenerationParams, sessionRequest: Partial<CreateSessionRequest>, fresh: boolean): Promise<void> {
  let unmount = () => {};
  const chat = createChat({ client, session, params, historyFile: defaultHistoryFile(), sessionRequest, fresh, onQuit: () => unmount() });
  const tty = process.stdout.isTTY === true;
  const pasteOff = () => process.stdout.write(PASTE_OFF);
  if (tty) {
    process.stdout.write(PASTE_ON);
    process.once("exit", pasteOff);
  }
  const app = render(chat.element, { exitOnCtrlC: false });
  // The renderer's first call is slow (tens of ms): pay it now, not when the first reply ends.
  setImmediate(() => renderMarkdown("*warm* `up`", 80));
  unmount = () => app.unmount();
  try {
    await app.waitUntilExit();
  } finally {
    await chat.controller.dispose();
    if (tty) {
      pasteOff();
      process.off("exit", pasteOff);
    }
  }
}
