import { describe, expect, it } from 'vitest';
import { redactContent } from './content-capture.ts';

describe('captured content', () => {
  it('is cut at 16 KiB of UTF-8, never inside a character', () => {
    for (const text of [
      `BIGPROMPT ${'é'.repeat(30_000)}`,
      `x${'😀'.repeat(10_000)}`,
      `ab${'€'.repeat(20_000)}`,
    ]) {
      const cut = redactContent(text);
      expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(16_384);
      expect(Buffer.byteLength(cut)).toBeGreaterThan(16_384 - 20);
      expect(cut.endsWith('…[truncated]')).toBe(true);
      expect(cut).not.toContain('\uFFFD');
      expect(text.startsWith(cut.slice(0, -'…[truncated]'.length))).toBe(true);
    }
  });

  it('keeps content within the limit whole', () => {
    const text = 'é'.repeat(8_192);
    expect(redactContent(text)).toBe(text);
    expect(redactContent(`${text}é`).endsWith('…[truncated]')).toBe(true);
  });
});
