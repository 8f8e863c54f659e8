import type { ServiceDefinition } from "@grpc/grpc-js";

/**
 * A copy of the service whose stream events are serialized once however many streams write them:
 * an event of a watched session goes to its sender and every watcher as the same object.
 */
export function encodeOnce<S extends ServiceDefinition>(service: S): S {
  const copy: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service)) {
    if (!method.responseStream) {
      copy[name] = method;
      continue;
    }
    const bytes = new WeakMap<object, Buffer>();
    copy[name] = {
      ...method,
      responseSerialize: (value: object) => {
        let b = bytes.get(value);
        if (!b) bytes.set(value, (b = method.responseSerialize(value)));
        return b;
      },
    };
  }
  return copy as S;
}
