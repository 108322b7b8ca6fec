import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { storableJson, storableText } from './storable.ts';

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const unstorable = (text: string) => text.includes('\u0000') || loneSurrogate.test(text);

describe('storableJson and storableText', () => {
  it('replace NUL and unpaired surrogates, and keep everything else as it was', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.string({ unit: 'binary' }), (value, text) => {
        const document = { value, text, key: { [text]: text } };
        const json = storableJson(document) ?? '';
        const parsed = JSON.parse(json) as typeof document;
        expect(unstorable(JSON.stringify(parsed))).toBe(false);
        expect(unstorable(parsed.text)).toBe(false);
        if (!unstorable(text)) expect(parsed.text).toBe(text);
        expect(storableText(text).length).toBe(text.length);
        expect(unstorable(storableText(text))).toBe(false);
        if (!unstorable(text)) expect(storableText(text)).toBe(text);
      }),
    );
  });

  it('leaves an escaped backslash before u0000 as text', () => {
    expect(JSON.parse(storableJson({ a: '\\u0000 and \u0000' }) ?? '')).toEqual({
      a: '\\u0000 and \uFFFD',
    });
    expect(storableJson(undefined)).toBeUndefined();
  });
});
