/** A response body read up to a cap. */
export interface CappedText {
  /** At most `maxChars` characters (UTF-16 code units, as `String.length` counts). */
  readonly text: string;
  /** Whether the body went on past `maxChars`; the rest was not read. */
  readonly truncated: boolean;
}

/**
 * The first `maxChars` characters of `text`, one fewer where the cut would leave half a
 * surrogate pair at the end (a lone surrogate is not valid UTF-8 nor storable as jsonb).
 */
export function sliceChars(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const code = text.charCodeAt(maxChars - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? maxChars - 1 : maxChars);
}

/**
 * Reads a response body as UTF-8 text, at most `maxChars` characters of it, so a huge or
 * endless body costs at most the cap (and one network chunk) in memory: once the text passes
 * the cap, the body is cancelled and `abort` (the request's own controller) is called, which
 * closes the connection. Multi-byte characters split between chunks are decoded whole, and a
 * cut never leaves half a surrogate pair at the end.
 */
export async function readCapped(
  response: Response,
  options: { readonly maxChars: number; readonly abort?: () => void },
): Promise<CappedText> {
  const { maxChars } = options;
  const body = response.body;
  if (body === null) return { text: '', truncated: false };
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  let text = '';
  let complete = false;
  try {
    for (;;) {
      const chunk = await reader.read();
      text += chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
      // One character past the cap decides truncation; keeping it needs no more than a chunk.
      if (text.length > maxChars) return { text: sliceChars(text, maxChars), truncated: true };
      if (chunk.done) {
        complete = true;
        return { text, truncated: false };
      }
    }
  } finally {
    if (!complete) {
      // Stop reading: nothing more is downloaded, and the connection is closed, not reused.
      reader.cancel().catch(() => undefined);
      options.abort?.();
    }
  }
}
