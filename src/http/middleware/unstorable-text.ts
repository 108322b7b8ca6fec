import { ValidationError } from '../../domain/errors.ts';
import { jsonNestingExceeds, maxJsonDepth } from '../../domain/json-depth.ts';
import { isUnstorable } from '../../storage/postgres/storable.ts';

/**
 * JSON escapes that may decode to text PostgreSQL refuses to store (`text` rejects NUL,
 * `jsonb` rejects NUL and unpaired surrogates): `\u0000` and any surrogate escape. Deliberately
 * over-inclusive (a well-formed escaped pair, or an escaped backslash before `u0000`, is fine):
 * a match only means the parsed body is walked, which decides. Matching pairs here instead
 * was bypassable (an escaped backslash before a fake high surrogate hid a lone low one).
 */
const suspect = /\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})/;

/**
 * The dotted path (from `body`) of the first string, value or key, in a parsed JSON body that
 * holds a NUL character or an unpaired surrogate; undefined when there is none. Iterative, so
 * a deeply nested body cannot exhaust the stack.
 */
export function unstorableTextPath(value: unknown): string | undefined {
  const pending: [unknown, string][] = [[value, 'body']];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, path] = next;
    if (typeof item === 'string') {
      if (isUnstorable(item)) return path;
    } else if (Array.isArray(item)) {
      for (let index = item.length - 1; index >= 0; index--)
        pending.push([item[index], `${path}.${index}`]);
    } else if (typeof item === 'object' && item !== null) {
      const entries = Object.entries(item);
      for (let index = entries.length - 1; index >= 0; index--) {
        const [key, child] = entries[index] as [string, unknown];
        if (isUnstorable(key)) return `${path}.${JSON.stringify(key).slice(1, -1)}`;
        pending.push([child, `${path}.${key}`]);
      }
    }
  }
  return undefined;
}

/**
 * Refuses a JSON body whose text would decode to a string PostgreSQL cannot store, with a 422
 * naming the field, before any route writes part of it. The raw text is scanned (the route's
 * validator parses the same cached text afterwards); only a suspect body is parsed here.
 */
export function assertStorableJson(text: string): void {
  if (!suspect.test(text)) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return; // the route's validator reports malformed JSON
  }
  const path = unstorableTextPath(parsed);
  if (path !== undefined)
    throw new ValidationError([
      { path, message: 'must not contain NUL characters (\\u0000) or unpaired UTF-16 surrogates' },
    ]);
}

/**
 * Refuses a JSON body nested deeper than {@link maxJsonDepth} with a 422, before anything
 * parses or walks it (see {@link jsonNestingExceeds}).
 */
export function assertShallowJson(text: string): void {
  if (jsonNestingExceeds(text))
    throw new ValidationError([
      { path: 'body', message: `is nested deeper than ${maxJsonDepth} levels` },
    ]);
}
