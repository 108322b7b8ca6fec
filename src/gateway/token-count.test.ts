import fc from 'fast-check';
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base';
import { describe, expect, it } from 'vitest';
import type { MessageV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { fitsContext, type PromptSize, promptTokensOn } from './context-fit.ts';
import { measureInput } from './pricing.ts';
import {
  countAnswerTokens,
  countInPieces,
  countPromptTokens,
  createPromptTokens,
  type Prompt,
  tokenizerOf,
} from './token-count.ts';

const user = (text: string): MessageV1 => ({
  role: 'user',
  content: [{ type: 'text', text }],
  provenance: 'user',
});
const prompt = (text: string): Prompt => ({ messages: [user(text)], tools: [] });

async function sized(input: Prompt): Promise<PromptSize> {
  const size = {
    bound: measureInput(input.messages, input).bound,
    tokens: createPromptTokens(input),
  };
  await size.tokens.count('o200k_base');
  return size;
}

describe('token counting', () => {
  it('counts as OpenAI’s tokenizers do, with the chat format’s overhead', async () => {
    // One user message: 3 tokens of markers, 1 for the role, 3 to prime the answer (and the
    // trailing space is a token of its own).
    expect(await countPromptTokens(prompt('hello '.repeat(300)), 'o200k_base')).toBe(308);
    expect(await countPromptTokens(prompt('word '.repeat(400)), 'o200k_base')).toBe(408);
    expect(
      await countPromptTokens(
        prompt('The quick brown fox jumps over the lazy dog again and again'),
        'cl100k_base',
      ),
    ).toBe(19);
    // Special-token markers are text to a provider, not an error.
    expect(await countPromptTokens(prompt('<|endoftext|>'), 'o200k_base')).toBeGreaterThan(7);
    expect(await countAnswerTokens({ text: 'echo: hello', toolCalls: [] }, 'o200k_base')).toBe(3);
  });

  it('uses the encoding of OpenAI families, and o200k_base approximately for the rest', () => {
    for (const model of ['openai:gpt-4o-2024-08-06', 'gpt-5-mini', 'azure:o3', 'x:openai/gpt-4.1'])
      expect(tokenizerOf(model), model).toEqual({ encoding: 'o200k_base', exact: true });
    for (const model of ['openai:gpt-4', 'openai:gpt-4-turbo', 'gpt-3.5-turbo-0125'])
      expect(tokenizerOf(model), model).toEqual({ encoding: 'cl100k_base', exact: true });
    for (const model of [
      'vllm:meta-llama/Llama-3.1-8B',
      'anthropic:claude-sonnet-4',
      'o3x',
      'local',
    ])
      expect(tokenizerOf(model), model).toEqual({ encoding: 'o200k_base', exact: false });
  });

  it('never counts more tokens than the byte bound (property)', async () => {
    const text = fc.string({ unit: 'binary', maxLength: 300 });
    const part = fc.oneof(
      text.map((value) => ({ type: 'text' as const, text: value })),
      fc.record({
        type: fc.constant('tool-call' as const),
        toolCallId: fc.string({ maxLength: 10 }),
        toolName: fc.stringMatching(/^[a-z_]{1,20}$/),
        input: fc.jsonValue({ maxDepth: 3 }),
      }),
      fc.record({
        type: fc.constant('tool-result' as const),
        toolCallId: fc.string({ maxLength: 10 }),
        toolName: fc.stringMatching(/^[a-z_]{1,20}$/),
        output: fc.oneof(text, fc.jsonValue({ maxDepth: 3 })),
      }),
    );
    const message: fc.Arbitrary<MessageV1> = fc.record({
      role: fc.constantFrom('system', 'user', 'assistant', 'tool'),
      content: fc.array(part, { maxLength: 4 }),
      provenance: fc.constant('user'),
    });
    const tool: fc.Arbitrary<ToolDescriptionV1> = fc.record({
      name: fc.stringMatching(/^[a-z_]{1,20}$/),
      description: fc.string({ maxLength: 80 }),
      inputSchema: fc.constantFrom(
        {},
        { type: 'object', properties: { a: { type: 'string', description: 'x' } } },
        { type: 'object', properties: { list: { type: 'array', items: { enum: ['a', 'b'] } } } },
      ),
    }) as fc.Arbitrary<ToolDescriptionV1>;
    await fc.assert(
      fc.asyncProperty(
        fc.array(message, { maxLength: 5 }),
        fc.array(tool, { maxLength: 3 }),
        async (messages, tools) => {
          const { bound } = measureInput(messages, { tools });
          expect(await countPromptTokens({ messages, tools }, 'o200k_base')).toBeLessThanOrEqual(
            bound,
          );
          expect(await countPromptTokens({ messages, tools }, 'cl100k_base')).toBeLessThanOrEqual(
            bound,
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('whether a prompt fits a deployment', () => {
  it('decides by the count, exactly for OpenAI families and with a margin for others', async () => {
    const size = await sized(prompt('word '.repeat(400))); // 408 tokens, 2,000+ bytes
    expect(fitsContext(size, { model: 'p:m-small', contextTokens: 300 })).toBe(false);
    expect(fitsContext(size, { model: 'p:m-small', contextTokens: 330 })).toBe(true); // × 1.25
    expect(fitsContext(size, { model: 'p:gpt-4o', contextTokens: 407 })).toBe(false);
    expect(fitsContext(size, { model: 'p:gpt-4o', contextTokens: 408 })).toBe(true);
    // Fits by tokens though not by 3 bytes a token.
    expect(fitsContext(size, { model: 'p:m', contextTokens: 600 })).toBe(true);
    expect(promptTokensOn(size, { model: 'p:gpt-4o' })).toBe(408);
    expect(promptTokensOn(size, { model: 'p:m' })).toBe(510);
  });

  it('needs no count where the byte bound fits the window, and sends what it has not counted', async () => {
    const input = prompt('hi');
    const size = {
      bound: measureInput(input.messages, input).bound,
      tokens: createPromptTokens(input),
    };
    expect(fitsContext(size, { model: 'p:m', contextTokens: 100 })).toBe(true);
    expect(size.tokens.counted('o200k_base')).toBeUndefined();
    expect(fitsContext({ ...size, bound: 1_000 }, { model: 'p:m', contextTokens: 100 })).toBe(true);
    expect(promptTokensOn(size, { model: 'p:m' })).toBe(size.bound);
  });
});

describe('counting long text', () => {
  const whole = (text: string) => o200k(text, { disallowedSpecial: new Set<string>() });

  it('counts text of words piece by piece exactly as in one go (property)', () => {
    const word = fc.stringMatching(/^[A-Za-z0-9,.;'!?-]{1,12}$/);
    const space = fc.constantFrom(' ', '  ', '\n', '\t', ' \n');
    fc.assert(
      fc.property(fc.array(fc.tuple(word, space), { minLength: 1, maxLength: 1_500 }), (parts) => {
        const text = parts.map(([text, gap]) => text + gap).join('');
        expect(countInPieces(text, whole)).toBe(whole(text));
      }),
      { numRuns: 30 },
    );
  });

  it('counts a long run without white space at most one token high per 128 characters', () => {
    const base64 = Buffer.from(
      Array.from({ length: 30_000 }, (_, index) => (index * 7) % 256),
    ).toString('base64');
    const counted = countInPieces(base64, whole);
    expect(counted).toBeGreaterThanOrEqual(whole(base64));
    expect(counted).toBeLessThanOrEqual(whole(base64) + Math.ceil(base64.length / 128));
  });

  it('counts hostile prompts in linear time: one letter 200,000 times, a CJK paragraph', async () => {
    // In one go each took minutes (quadratic), blocking the event loop; the test's time-out
    // stands guard.
    for (const text of ['a'.repeat(200_000), '中文文本测试'.repeat(20_000)]) {
      const counted = await countPromptTokens(prompt(text), 'o200k_base');
      expect(counted).toBeGreaterThan(text.length / 128);
    }
  });
});
