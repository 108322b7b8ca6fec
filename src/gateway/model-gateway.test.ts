import { MockLanguageModelV3 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { createLruMap } from './lru-map.ts';
import { createModelGateway } from './model-gateway.ts';

describe('an LRU map', () => {
  it('keeps its most recently used entries', () => {
    const map = createLruMap<number>(2);
    map.set('a', 1);
    map.set('b', 2);
    expect(map.get('a')).toBe(1);
    map.set('c', 3);
    expect(map.size).toBe(2);
    expect(map.get('b')).toBeUndefined();
    expect(map.get('a')).toBe(1);
    expect(map.get('c')).toBe(3);
  });
});

describe('the model gateway', () => {
  it('keeps a bounded number of provider models, whatever model names callers send', async () => {
    const created: string[] = [];
    const gateway = createModelGateway({
      localTokenDelayMs: 0,
      providers: { oai: { type: 'openai', apiKey: 'sk-test' } },
      languageModel: (_provider, _config, modelId) => {
        created.push(modelId);
        return new MockLanguageModelV3({
          modelId,
          doGenerate: {
            content: [{ type: 'text', text: 'hi' }],
            finishReason: { unified: 'stop', raw: 'stop' },
            usage: {
              inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
              outputTokens: { total: 1, text: 1, reasoning: 0 },
            },
            warnings: [],
          },
        });
      },
    });
    const call = (model: string) =>
      gateway.generate({
        model,
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'hello' }], provenance: 'user' },
        ],
        tools: [],
        maxOutputTokens: 5,
        signal: new AbortController().signal,
        stream: false,
      });
    expect((await call('oai:model-0')).text).toBe('hi');
    await call('oai:model-0');
    expect(created).toEqual(['model-0']);
    // One client sending a fresh model name per request must not keep a model object per name.
    for (let index = 1; index <= 300; index += 1) await call(`oai:model-${index}`);
    await call('oai:model-0');
    expect(created.filter((id) => id === 'model-0')).toHaveLength(2);
    await call('oai:model-300');
    expect(created.filter((id) => id === 'model-300')).toHaveLength(1);
  });
});
