import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { contextWindowOf, createPriceTable, defaultPrices, keyCovers } from './pricing.ts';

const unknownModelPrice = { inputPerMTok: 10, outputPerMTok: 30 };
const table = createPriceTable({
  prices: { 'vllm:': { inputPerMTok: 0.5, outputPerMTok: 0.5 } },
  unknownModelPrice,
});

describe('model prices', () => {
  it('find a family for dated and pinned variants, with or without the provider', () => {
    expect(table.priceOf('openai:gpt-4o-2024-08-06')).toEqual(defaultPrices['gpt-4o']);
    expect(table.priceOf('gpt-5-mini-2025-08-07')).toEqual(defaultPrices['gpt-5-mini']);
    expect(table.priceOf('anthropic:claude-sonnet-4-20250514')).toEqual(
      defaultPrices['claude-sonnet-4'],
    );
    expect(table.priceOf('anthropic:claude-3-5-haiku-latest')).toEqual(
      defaultPrices['claude-3-5-haiku'],
    );
    expect(table.priceOf('local')).toEqual(defaultPrices['local']);
    // An operator's key ending in `:` prices a whole provider.
    expect(table.priceOf('vllm:anything/at-all')).toEqual({
      inputPerMTok: 0.5,
      outputPerMTok: 0.5,
    });
  });

  it('never lend a cheaper family’s price to a different model or provider', () => {
    expect(table.priceOf('openai:o3-pro')).toEqual(defaultPrices['o3-pro']);
    expect(table.priceOf('openai:gpt-5-pro-2025-10-06')).toEqual(defaultPrices['gpt-5-pro']);
    expect(table.priceOf('openai:gpt-4o-2024-05-13')).toEqual(defaultPrices['gpt-4o-2024-05-13']);
    for (const model of [
      'openai:o3-pro-max',
      'openai:gpt-5-codex',
      'localai:huge',
      'local-large',
      'gpt-4o-audio-preview',
    ])
      expect(table.priceOf(model), model).toEqual(unknownModelPrice);
    expect(contextWindowOf('localai:huge')).toBeUndefined();
    expect(contextWindowOf('openai:gpt-4o-2024-08-06')).toBe(128_000);
    // Every priced family has its window.
    for (const family of Object.keys(defaultPrices))
      expect(contextWindowOf(family), family).toBeDefined();
  });

  it('cover a model only as itself, its variant or an explicit prefix (property)', () => {
    const word = fc.stringMatching(/^[a-z0-9.]{1,8}$/);
    fc.assert(
      fc.property(word, word, (key, suffix) => {
        expect(keyCovers(key, key)).toBe(true);
        expect(keyCovers(key, `${key}-2025-01-01`)).toBe(true);
        // A letter after the dash names another model.
        expect(keyCovers(key, `${key}-x${suffix}`)).toBe(false);
        expect(keyCovers(key, `${key}${suffix}`)).toBe(false);
        expect(keyCovers(`${key}:`, `${key}:${suffix}`)).toBe(true);
      }),
    );
  });
});
