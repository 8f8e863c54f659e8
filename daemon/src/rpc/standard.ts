import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Server } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProto } from "grpc-health-check";

/** The repository's proto folder (buf compiles it into shared/src/gen; reflection needs the descriptors). */
const PROTO_DIR = fileURLToPath(new URL("../../../proto/", import.meta.url));
const HEALTH_DIR = path.resolve(path.dirname(healthProto), "../..");

/** The nanollm services, by the names health checks and reflection use. */
export const SERVICE_NAMES = ["nanollm.v1.ChatService", "nanollm.v1.SessionService", "nanollm.v1.ModelService"];

/**
 * grpc.health.v1.Health (for probes and load balancers; answers without credentials, like
 * reflection, since neither reveals more than the public .proto files) and server reflection
 * listing the nanollm services.
 */
export function addStandardServices(server: Server): HealthImplementation {
  const health = new HealthImplementation(Object.fromEntries(["", ...SERVICE_NAMES].map((name) => [name, "NOT_SERVING" as const])));
  health.addToServer(server);
  const ours = fs.readdirSync(path.join(PROTO_DIR, "nanollm/v1")).filter((f) => f.endsWith(".proto")).map((f) => `nanollm/v1/${f}`);
  const definition = loadSync([...ours, "health/v1/health.proto"], { includeDirs: [PROTO_DIR, HEALTH_DIR] });
  new ReflectionService(definition).addToServer(server);
  return health;
}

/** Sets every service's health: SERVING once bound, NOT_SERVING from the start of shutdown. */
export function setHealth(health: HealthImplementation, serving: boolean): void {
  for (const name of ["", ...SERVICE_NAMES]) health.setStatus(name, serving ? "SERVING" : "NOT_SERVING");
}
