/**
 * Appends `items` to `target` in place. `target.push(...items)` passes every item as an argument
 * and overflows the stack for ~100,000 of them (a long turn's token ids).
 */
export function appendAll<T>(target: T[], items: readonly T[]): T[] {
  for (const item of items) target.push(item);
  return target;
}
