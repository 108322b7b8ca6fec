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
