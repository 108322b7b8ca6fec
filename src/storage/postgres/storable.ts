/**
 * Text from outside (a tool's output, a model's answer) can hold what PostgreSQL refuses to
 * store: a NUL character (`text` and `jsonb`) or an unpaired UTF-16 surrogate (`jsonb`). A run
 * must not fail on it, so such characters become U+FFFD on the way in.
 */

/**
 * `\u0000` and lone-surrogate escapes in `JSON.stringify` output (the only way it writes those
 * characters), not preceded by an odd number of backslashes (which would make them text).
 */
const unstorableEscape = /(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/g;
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const anyLoneSurrogate = new RegExp(loneSurrogate.source);

/** True when `text` holds a character PostgreSQL refuses: NUL, or an unpaired surrogate. */
export function isUnstorable(text: string): boolean {
  return text.includes('\u0000') || anyLoneSurrogate.test(text);
}

/** `JSON.stringify(value)` as `jsonb` accepts it: NUL and unpaired surrogates become U+FFFD. */
export function storableJson(value: unknown): string | undefined {
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined || !json.includes('\\u')) return json;
  return json.replace(unstorableEscape, '$1\\ufffd');
}

/** `text` as a `text` column accepts it: NUL and unpaired surrogates become U+FFFD. */
export function storableText(text: string): string {
  return text.replaceAll('\u0000', '\uFFFD').replace(loneSurrogate, '\uFFFD');
}
