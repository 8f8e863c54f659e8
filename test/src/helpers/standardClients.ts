import { createRequire } from "node:module";
import path from "node:path";
import { credentials, makeGenericClientConstructor, type Client, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { service as healthService } from "grpc-health-check";

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = path.join(path.dirname(require.resolve("@grpc/reflection/package.json")), "build/proto/grpc/reflection/v1/reflection.proto");

type Status = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";
interface HealthClient extends Client {
  check(req: { service: string }, cb: (err: ServiceError | null, res: { status: Status }) => void): void;
  watch(req: { service: string }): ClientReadableStream<{ status: Status }>;
}

/** A grpc.health.v1.Health client, as probes and load balancers use it. */
export function healthClient(address: string): HealthClient {
  const Health = makeGenericClientConstructor(healthService, "Health");
  return new Health(address, credentials.createInsecure()) as unknown as HealthClient;
}

/** Asks the daemon's server reflection (grpc.reflection.v1) for its services, as grpcurl's `list` does. */
export async function reflectedServices(address: string): Promise<string[]> {
  const def = loadSync(REFLECTION_PROTO, { keepCase: true });
  const Reflection = makeGenericClientConstructor(def["grpc.reflection.v1.ServerReflection"] as never, "ServerReflection");
  const client = new Reflection(address, credentials.createInsecure()) as unknown as Client & {
    ServerReflectionInfo(): NodeJS.ReadWriteStream & { write(m: object): boolean; end(): void };
  };
  try {
    const stream = client.ServerReflectionInfo();
    const answer = new Promise<string[]>((resolve, reject) => {
      stream.on("data", (res: { list_services_response?: { service: { name: string }[] } }) => resolve(res.list_services_response?.service.map((s) => s.name) ?? []));
      stream.on("error", reject);
    });
    stream.write({ list_services: "*" });
    const names = await answer;
    stream.end();
    return names;
  } finally {
    client.close();
  }
}
