import type { HonoRequest } from 'hono';
import { AppError } from '../../domain/errors.ts';

/** Decodes UTF-8 and throws on a malformed sequence, rather than putting U+FFFD in its place. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a request body as UTF-8 text, refusing (400 `invalid_json`) bytes that are not UTF-8:
 * JSON is UTF-8 (RFC 8259 §8.1), and a lenient decoding would store U+FFFD where the client
 * sent something else. The text is also left in the request's body cache; Hono's `json()`
 * reads the first form cached (the bytes), so the validator decodes them once more, leniently:
 * the same text, since they were checked here.
 */
export async function readUtf8Body(request: HonoRequest): Promise<string> {
  const bytes = await request.arrayBuffer();
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new AppError(
      'invalid_json',
      'The request body is not valid UTF-8; JSON must be sent as UTF-8 (RFC 8259 §8.1).',
    );
  }
  // Hono caches each body form as a promise (its declared type says the resolved value).
  (request.bodyCache as unknown as { text?: Promise<string> }).text = Promise.resolve(text);
  return text;
}
