import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MessageV1 } from '../plugin-api/index.ts';
import { contextWindowFor, estimatedTokens, windowHistory } from './history-window.ts';

const messageArbitrary: fc.Arbitrary<MessageV1> = fc
  .record({
    role: fc.constantFrom('user', 'assistant', 'tool') as fc.Arbitrary<MessageV1['role']>,
    text: fc.string({ maxLength: 120 }),
  })
  .map(({ role, text }) =>
    role === 'tool'
      ? {
          role,
          content: [{ type: 'tool-result', toolCallId: 'c', toolName: 't', output: text }],
          provenance: 'tool:t',
        }
      : { role, content: [{ type: 'text', text }], provenance: role === 'user' ? 'user' : role },
  );

const inputArbitrary = fc.record({
  earlier: fc.array(messageArbitrary, { maxLength: 30 }),
  own: fc.array(messageArbitrary, { minLength: 0, maxLength: 2 }),
  maxMessages: fc.option(fc.integer({ min: 1, max: 40 }), { nil: null }),
  contextTokens: fc.option(fc.integer({ min: 0, max: 2_000 }), { nil: undefined }),
  outputTokens: fc.integer({ min: 0, max: 200 }),
  instructions: fc.string({ maxLength: 60 }),
});

const tokensOf = (messages: readonly MessageV1[]) =>
  messages.reduce((sum, message) => sum + estimatedTokens(message.content), 0);

describe('windowHistory', () => {
  it('sends the longest suffix of earlier messages within the limits, then the run’s own', () => {
    fc.assert(
      fc.property(inputArbitrary, (input) => {
        const { messages, dropped } = windowHistory({ ...input, tools: [] });
        const { earlier, own } = input;
        // The run's own messages always go, last; before them, a suffix of the earlier ones.
        expect(messages.slice(messages.length - own.length)).toEqual(own);
        const kept = messages.slice(0, messages.length - own.length);
        expect(kept).toEqual(earlier.slice(dropped));
        const room =
          input.contextTokens === undefined
            ? Number.POSITIVE_INFINITY
            : input.contextTokens -
              input.outputTokens -
              estimatedTokens(input.instructions) -
              tokensOf(own);
        const allowed = (start: number) =>
          (input.maxMessages === null || earlier.length - start <= input.maxMessages) &&
          tokensOf(earlier.slice(start)) <= room &&
          (start === 0 || earlier[start]?.role === 'user');
        // Within the limits, opening at a user message whenever something was cut…
        if (kept.length > 0) expect(allowed(dropped)).toBe(true);
        // …and no longer window would be.
        for (let start = 0; start < dropped; start += 1) expect(allowed(start)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('cuts nothing from a history that fits', () => {
    fc.assert(
      fc.property(inputArbitrary, (input) => {
        const sent = windowHistory({
          ...input,
          maxMessages: null,
          contextTokens: undefined,
          tools: [],
        });
        expect(sent.dropped).toBe(0);
        expect(sent.messages).toEqual([...input.earlier, ...input.own]);
      }),
    );
  });

  it('counts the offered tools’ descriptions against the window', () => {
    const turn = (text: string): MessageV1 => ({
      role: 'user',
      content: [{ type: 'text', text }],
      provenance: 'user',
    });
    const earlier = [turn('a'.repeat(400)), turn('b'.repeat(400))];
    const base = {
      earlier,
      own: [turn('now')],
      maxMessages: null,
      contextTokens: 250,
      outputTokens: 0,
      instructions: '',
    };
    expect(windowHistory({ ...base, tools: [] }).dropped).toBe(1);
    const tool = { name: 'big', description: 'd'.repeat(300), inputSchema: {} };
    expect(windowHistory({ ...base, tools: [tool] }).dropped).toBe(2);
  });
});

describe('contextWindowFor', () => {
  it('is the largest window of the deployments, unknown when one is unknown', () => {
    expect(contextWindowFor([])).toBeUndefined();
    expect(
      contextWindowFor([{ model: 'openai:gpt-4o' }, { model: 'x:y', contextTokens: 500_000 }]),
    ).toBe(500_000);
    expect(contextWindowFor([{ model: 'openai:gpt-4o-mini' }])).toBe(128_000);
    expect(contextWindowFor([{ model: 'openai:gpt-4o' }, { model: 'mock:unknown' }])).toBe(
      undefined,
    );
  });
});
