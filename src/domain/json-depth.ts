/** Deepest nesting of arrays and objects Brigade parses from text it did not write. */
export const maxJsonDepth = 100;

/**
 * Whether JSON `text` nests arrays and objects deeper than `max`, in one pass over the text
 * (brackets inside strings skipped), before anything parses it: the recursive code that would
 * later walk such a value (`JSON.stringify` in a size check or a cache key) exhausts the stack
 * on 5,000 levels, which take 10 KB.
 */
export function jsonNestingExceeds(text: string, max = maxJsonDepth): boolean {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (inString) {
      if (code === 0x5c)
        index++; // a backslash escapes the next character
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) inString = true;
    else if (code === 0x7b || code === 0x5b) {
      depth++;
      if (depth > max) return true;
    } else if (code === 0x7d || code === 0x5d) depth--;
  }
  return false;
}

/** `JSON.parse`, refusing (a SyntaxError, as for malformed JSON) text nested too deep. */
export function parseBoundedJson(text: string): unknown {
  if (jsonNestingExceeds(text))
    throw new SyntaxError(`JSON nested deeper than ${maxJsonDepth} levels`);
  return JSON.parse(text) as unknown;
}

/**
 * Whether an already parsed `value` nests arrays and objects deeper than `max`. It walks the
 * value with a stack of its own, not by recursion, so it answers for any depth: for a value
 * that arrived parsed (an MCP server's tool list, parsed by the SDK), before code that
 * recurses over it (`JSON.stringify`, Ajv) runs out of stack.
 */
export function valueNestingExceeds(value: unknown, max = maxJsonDepth): boolean {
  const pending: { readonly value: unknown; readonly depth: number }[] = [{ value, depth: 0 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.value === null || typeof next.value !== 'object') continue;
    const depth = next.depth + 1;
    if (depth > max) return true;
    for (const child of Object.values(next.value)) pending.push({ value: child, depth });
  }
  return false;
}
