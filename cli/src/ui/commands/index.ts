import { image, reset, retry, system, template, undo } from "./conversation.js";
import { functions, help, quit, save, stats } from "./info.js";
import { model } from "./model.js";
import { session } from "./sessions.js";
import { set } from "./settings.js";
import type { SlashCommand } from "./types.js";

/** Every slash command, in the order /help lists them. */
export const COMMANDS: readonly SlashCommand[] = [help, reset, undo, retry, image, system, set, stats, session, model, template, functions, save, quit];
