import { z } from '@hono/zod-openapi';

/** What a refused `__proto__` key is told (as the tools API says of a schema declaring one). */
const protoKeyMessage = "'__proto__' may not be used as a key";

/**
 * The path (keys and indexes from `value`) of the first key named `__proto__` in a parsed JSON
 * value, or undefined when there is none. Iterative, so a deeply nested value cannot exhaust
 * the stack.
 */
export function protoKeyPath(value: unknown): (string | number)[] | undefined {
  const pending: [unknown, (string | number)[]][] = [[value, []]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, path] = next;
    if (Array.isArray(item)) {
      for (let index = item.length - 1; index >= 0; index--)
        pending.push([item[index], [...path, index]]);
    } else if (typeof item === 'object' && item !== null) {
      const entries = Object.entries(item);
      for (const [key] of entries) if (key === '__proto__') return [...path, key];
      for (let index = entries.length - 1; index >= 0; index--) {
        const [key, child] = entries[index] as [string, unknown];
        pending.push([child, [...path, key]]);
      }
    }
  }
  return undefined;
}

/**
 * `schema`, a free-form JSON object a client sends (metadata, a tool's JSON Schema, a role
 * mapping), refusing a key named `__proto__` at any depth with an issue whose path names it
 * (422). Checked on the input as sent: `z.record` leaves such a key out of what it returns
 * (assigning it would replace the object's prototype), so it was dropped without a word; and
 * JavaScript that copies such an object by assignment would lose it, or change a prototype,
 * at any depth. The OpenAPI document describes `schema` unchanged.
 */
export function withoutProtoKeys<T extends z.ZodType>(schema: T) {
  return z.preprocess((value, context) => {
    const path = protoKeyPath(value);
    if (path !== undefined)
      context.addIssue({ code: 'custom', message: protoKeyMessage, path, input: value });
    return value;
  }, schema);
}
