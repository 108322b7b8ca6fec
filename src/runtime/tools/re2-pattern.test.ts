import fc from 'fast-check';
import { RE2JS } from 're2js';
import { describe, expect, it } from 'vitest';
import { PatternError, toRe2Pattern } from './re2-pattern.ts';

/** Patterns whose JavaScript meaning RE2 must keep once rewritten. */
const patterns = [
  '^\\S+$',
  '^\\s*$',
  '^.+$',
  '^[\\s\\d]+$',
  '^[^\\s]+$',
  'a.c',
  '^\\u0041\\u00e9$',
  '^\\u{1F600}$',
  '^\\uD83D\\uDE00$',
  '^\\p{Letter}+$',
  '^\\p{Lu}\\p{Ll}*$',
  '^\\p{Script=Greek}+$',
  '^(?<word>\\w+)-\\d{2,4}$',
  '^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$',
  '\\cJ',
  '^\\/path\\/\\d+$',
];

/** Characters where the two engines' defaults differ: Unicode spaces and line terminators. */
const alphabet = fc.constantFrom(
  ...'aAbéΩλ019 _-.@/\t\n\r\v\f\u00a0\u2028\u2029\u3000\ufeff😀'.split(''),
  '😀',
  'Z',
);

describe('toRe2Pattern', () => {
  it('gives every pattern its JavaScript meaning on RE2 (property)', () => {
    for (const pattern of patterns) {
      const js = new RegExp(pattern, 'u');
      const re2 = RE2JS.compile(toRe2Pattern(pattern));
      fc.assert(
        fc.property(fc.array(alphabet, { maxLength: 8 }), (chars) => {
          const text = chars.join('');
          expect({ pattern, text, matches: re2.test(text) }).toEqual({
            pattern,
            text,
            matches: js.test(text),
          });
        }),
        { numRuns: 300 },
      );
    }
  });

  it('matches the samples each pattern is for', () => {
    const matches = (pattern: string, text: string) =>
      RE2JS.compile(toRe2Pattern(pattern)).test(text);
    expect(matches('^\\S+$', 'a\u00a0b')).toBe(false);
    expect(matches('^.$', '\r')).toBe(false);
    expect(matches('^\\u{1F600}$', '😀')).toBe(true);
    expect(matches('^\\p{Letter}+$', 'Ωλé')).toBe(true);
    expect(matches('^(?<word>\\w+)-\\d{2,4}$', 'ab-123')).toBe(true);
  });

  it('refuses what it cannot keep the meaning of, and leaves the rest to RE2', () => {
    for (const pattern of ['[\\S]', '[]', '[^]', '\\u12', '\\p{Bogus=x}', 'a\\'])
      expect(() => toRe2Pattern(pattern), pattern).toThrow(PatternError);
    for (const pattern of ['(a)\\1', '(?=a)', '(?<!a)b'])
      expect(() => RE2JS.compile(toRe2Pattern(pattern)), pattern).toThrow();
  });
});
