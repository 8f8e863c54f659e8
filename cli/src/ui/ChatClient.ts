import type { NanoClient } from "../client/NanoClient.js";

/** The part of the gRPC client the chat screen uses (tests hand in a scripted fake); without `attach` the screen shows only its own turns. */
export type ChatClient = Pick<
  NanoClient,
  "host" | "turn" | "createSession" | "getSession" | "listSessions" | "resetSession" | "updateSession" | "truncateSession" | "deleteSession" | "listTemplates" | "listLocalModels"
> &
  Partial<Pick<NanoClient, "attach">>;
