import type { ServiceDefinition } from "@grpc/grpc-js";
import { fail } from "@nanollm/shared";

// grpc-js answers a request it cannot decode with INTERNAL; nanollm answers INVALID_ARGUMENT,
// so undecodable bytes become this marker and the handler refuses it.
const MALFORMED = Object.freeze({ malformed: true });

/** A copy of the service whose request decoders never throw. */
export function tolerant<S extends ServiceDefinition>(service: S): S {
  const copy: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service)) {
    copy[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch {
          return MALFORMED;
        }
      },
    };
  }
  return copy as S;
}

/** Throws INVALID_ARGUMENT for a request that could not be decoded. */
export function checkDecoded(request: unknown, what: string): void {
  if (request === MALFORMED) throw fail.invalid(`The ${what} request could not be decoded as protobuf; send a message built from nanollm's .proto files.`);
}
