export { startDaemon, type DaemonOptions, type RunningDaemon } from "./server.js";
export { isRemoteModel, resolveModel } from "./engine/resolveModel.js";
export { TemplateRegistry } from "./templates/TemplateRegistry.js";
export { render, renderToString, type RenderMessage } from "./templates/render.js";
export type { GpuChoice, KvCacheType } from "./engine/types.js";
export { Authenticator, type Headers } from "./auth/authenticate.js";
export type { Identity, Peer } from "./auth/Identity.js";
export { TokenFile } from "./auth/TokenFile.js";
export type { Authorize, RequestCredentials } from "./http/auth.js";
