import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readCapped } from './read-capped.ts';

/** A response whose body is `bytes` delivered in pieces cut at `cuts`. */
function chunkedResponse(bytes: Uint8Array, cuts: readonly number[]): Response {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const point of [...points, bytes.length]) {
    if (point > start) pieces.push(bytes.slice(start, point));
    start = Math.max(start, point);
  }
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = pieces.shift();
        if (next === undefined) controller.close();
        else controller.enqueue(next);
      },
    }),
  );
}

/** What the cap should give: the first `maxChars` characters, never half a surrogate pair. */
function expected(text: string, maxChars: number) {
  if (text.length <= maxChars) return { text, truncated: false };
  const code = text.charCodeAt(maxChars - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? maxChars - 1 : maxChars;
  return { text: text.slice(0, end), truncated: true };
}

describe('readCapped', () => {
  it('gives the first maxChars characters of UTF-8 text however its bytes are chunked', async () => {
    const character = fc.constantFrom('a', 'é', '€', '𝄞', '😀', '中', '\n', '"');
    await fc.assert(
      fc.asyncProperty(
        fc.array(character, { maxLength: 200 }).map((parts) => parts.join('')),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.integer({ min: 1, max: 120 }),
        async (text, cuts, maxChars) => {
          const bytes = new TextEncoder().encode(text);
          const result = await readCapped(chunkedResponse(bytes, cuts), { maxChars });
          expect(result).toEqual(expected(text, maxChars));
          expect(result.text).not.toContain('\uFFFD');
        },
      ),
      { numRuns: 300 },
    );
  });

  it('stops pulling an endless body once past the cap, cancels it and aborts the request', async () => {
    let pulls = 0;
    let cancelled = false;
    let aborted = false;
    const chunk = new TextEncoder().encode('x'.repeat(1_000));
    const endless = new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          pulls += 1;
          controller.enqueue(chunk);
        },
        cancel() {
          cancelled = true;
        },
      }),
    );
    const result = await readCapped(endless, {
      maxChars: 10_500,
      abort: () => {
        aborted = true;
      },
    });
    expect(result).toEqual({ text: 'x'.repeat(10_500), truncated: true });
    expect(cancelled).toBe(true);
    expect(aborted).toBe(true);
    // 11 chunks give the 10,501st character; a stream may pull one or two ahead.
    expect(pulls).toBeLessThanOrEqual(13);
  });

  it('reads an empty or short body whole and aborts nothing', async () => {
    let aborted = false;
    const abort = () => {
      aborted = true;
    };
    expect(await readCapped(new Response(null), { maxChars: 5, abort })).toEqual({
      text: '',
      truncated: false,
    });
    expect(await readCapped(new Response('héllo'), { maxChars: 5, abort })).toEqual({
      text: 'héllo',
      truncated: false,
    });
    expect(aborted).toBe(false);
  });
});
