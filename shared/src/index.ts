export * from "./errors.js";
export * from "./config.js";
export * from "./version.js";
export * from "./address.js";
export * from "./gen/nanollm/v1/common.js";
export * from "./gen/nanollm/v1/chat.js";
export * from "./gen/nanollm/v1/sessions.js";
export * from "./gen/nanollm/v1/models.js";
// The generated files each export these helpers; pick one copy so the star exports don't clash.
export { type DeepPartial, type MessageFns, protobufPackage, protobufFileName } from "./gen/nanollm/v1/common.js";
export * from "./settings.js";
export * from "./ready.js";
export * from "./quantities.js";
