import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateLocal } from './local-model.ts';

const calculator = {
  name: 'calculator',
  description: 'Evaluates an arithmetic expression.',
  inputSchema: { type: 'object', properties: { expression: { type: 'string' } } },
};

function ask(text: string) {
  return generateLocal({
    messages: [{ role: 'user', provenance: 'user', content: [{ type: 'text', text }] }],
    tools: [calculator],
    maxOutputTokens: 4096,
    signal: new AbortController().signal,
    tokenDelayMs: 0,
  });
}

describe('the local model’s documented tool call', () => {
  it('calls the tool when the message ends with `call <tool> {json}`, wherever the call starts', async () => {
    for (const text of [
      'call calculator {"expression":"6*7"}',
      'please call calculator {"expression":"6*7"}',
      'Hi there.\ncall calculator {"expression":"6*7"}',
      'now call calculator{"expression":"6*7"}  ',
      'call foo, then call calculator {"expression":"6*7"}',
    ]) {
      const result = await ask(text);
      expect(result.toolCalls, text).toEqual([
        { toolCallId: expect.any(String), toolName: 'calculator', input: { expression: '6*7' } },
      ]);
    }
    expect((await ask('call calculator')).toolCalls[0]?.input).toEqual({});
  });

  it('answers instead when the call does not end the message, or is part of a word', async () => {
    for (const text of [
      'call calculator {"expression":"1+2"} thanks',
      'recall calculator {"expression":"1+2"}',
      'call calculators {"expression":"1+2"}',
      'call calculator now {"expression":"1+2"}',
    ]) {
      const result = await ask(text);
      expect(result.toolCalls, text).toEqual([]);
      expect(result.text).toBe(`You said: ${text}`);
    }
  });

  it('answers a long message full of calls that are not one (a scan, no backtracking)', async () => {
    // A backtracking pattern would not finish here within the test's time-out.
    const text = `${'call calculator {"x": '.repeat(40_000)}done`;
    expect((await ask(text)).toolCalls).toEqual([]);
  });

  it('finds the call after any text that ends in white space', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 40 }).filter((prefix) => !/call/i.test(prefix)),
        fc.integer({ min: 0, max: 1000 }),
        async (prefix, value) => {
          const result = await ask(`${prefix} call calculator {"expression":"${value}"}`);
          expect(result.toolCalls[0]?.input).toEqual({ expression: String(value) });
        },
      ),
    );
  });
});
