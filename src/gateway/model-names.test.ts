import { describe, expect, it } from 'vitest';
import { createModelNames } from './model-names.ts';

const names = createModelNames({
  providers: { openai: {}, anthropic: {}, vllm: {} },
  routes: [{ name: 'fast', deployments: [{ model: 'vllm:llama-3.1-8b' }, { model: 'local' }] }],
  models: { prices: { 'vllm:': {}, 'my-model': {}, 'vllm:qwen': {} } },
});

describe('model names as labels', () => {
  it('keep the names the configuration knows', () => {
    for (const model of [
      'local',
      'fast',
      'vllm:llama-3.1-8b',
      'openai:gpt-4o',
      'openai:gpt-4o-2024-08-06',
      'anthropic:claude-sonnet-4-20250514',
      'anthropic:claude-3-5-haiku-latest',
      'vllm:my-model',
      'vllm:qwen',
    ])
      expect(names.modelLabel(model)).toBe(model);
    expect(names.providerLabel('openai')).toBe('openai');
    expect(names.providerLabel('local')).toBe('local');
  });

  it('turn every other name into <provider>:other or other', () => {
    expect(names.modelLabel('openai:6f04040e-b691-4d26-82a5-47b49198bea7')).toBe('openai:other');
    expect(names.modelLabel('openai:user-alice@example.com')).toBe('openai:other');
    expect(names.modelLabel('openai:brg_b6XtBCENxqYTyC-opM4ofatRhCyNwHRIqSWqoDQTeCg')).toBe(
      'openai:other',
    );
    // A variant is a date or `latest`, nothing else after the family.
    expect(names.modelLabel('openai:gpt-4o-1user@example.com')).toBe('openai:other');
    expect(names.modelLabel('openai:gpt-4o-20250514-x')).toBe('openai:other');
    // A price key covering a whole prefix names no model.
    expect(names.modelLabel('vllm:anything')).toBe('vllm:other');
    expect(names.modelLabel('mock:gpt-4o')).toBe('other');
    expect(names.modelLabel('local:gpt-4o')).toBe('local:other');
    expect(names.modelLabel('gpt-4o')).toBe('other');
    expect(names.modelLabel('ghp_ROUTECANARY0000000000000000000000')).toBe('other');
    expect(names.providerLabel('mock')).toBe('other');
  });
});
