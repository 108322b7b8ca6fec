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
 * The dotted path (from `body`) of the first value in a parsed JSON body that `isBad` picks,
 * or of the first key `isBadKey` picks; undefined when there is none. Iterative, so a deeply
 * nested body cannot exhaust the stack.
 */
function firstPath(
  value: unknown,
  test: {
    readonly isBad: (item: unknown) => boolean;
    readonly isBadKey?: (key: string) => boolean;
  },
): string | undefined {
  const pending: [unknown, string][] = [[value, 'body']];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, path] = next;
    if (test.isBad(item)) return path;
    if (Array.isArray(item)) {
      for (let index = item.length - 1; index >= 0; index--)
        pending.push([item[index], `${path}.${index}`]);
    } else if (typeof item === 'object' && item !== null) {
      const entries = Object.entries(item);
      for (let index = entries.length - 1; index >= 0; index--) {
        const [key, child] = entries[index] as [string, unknown];
        if (test.isBadKey?.(key) === true) return `${path}.${JSON.stringify(key).slice(1, -1)}`;
        pending.push([child, `${path}.${key}`]);
      }
    }
  }
  return undefined;
}

/**
 * The dotted path (from `body`) of the first string, value or key, in a parsed JSON body that
 * holds a NUL character or an unpaired surrogate; undefined when there is none.
 */
export function unstorableTextPath(value: unknown): string | undefined {
  return firstPath(value, {
    isBad: (item) => typeof item === 'string' && isUnstorable(item),
    isBadKey: isUnstorable,
  });
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

/**
 * JSON numbers that may be too large for a double: an exponent of three digits or more, or a
 * mantissa of 200 characters or more (with an exponent under 100, at least 209 digits are
 * needed to pass 1.8e308). Over-inclusive, like {@link suspect}: a match only means the
 * parsed body is walked. Anchored where a number can start, so ids holding `e123` do not match.
 */
const suspectNumber = /[:,[]\s*-?(?:[\d.]{200}|[\d.]*[eE]\+?\d{3})/;

/**
 * Refuses (422, naming the field) a JSON body holding a number beyond the range of a double
 * (`1e400`): JSON.parse makes it `Infinity`, which free-form fields (`metadata`…) would store
 * as `null`. A finite number is kept as JSON.parse reads it, rounded to a double.
 */
export function assertFiniteNumbers(text: string): void {
  if (!suspectNumber.test(text)) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return; // the route's validator reports malformed JSON
  }
  const path = firstPath(parsed, {
    isBad: (item) => typeof item === 'number' && !Number.isFinite(item),
  });
  if (path !== undefined)
    throw new ValidationError([
      { path, message: 'is a number beyond the range of a double (about ±1.8e308)' },
    ]);
}
