import { describe, expect, it } from 'vitest';
import type { ModelResultV1 } from '../plugin-api/index.ts';
import { recordToolCallIds, uniqueToolCallIds } from './tool-call-ids.ts';

function answer(...ids: string[]): ModelResultV1 {
  return {
    text: '',
    toolCalls: ids.map((toolCallId, n) => ({ toolCallId, toolName: 'effect', input: { n } })),
    finishReason: 'tool-calls',
    usage: { inputTokens: 1, outputTokens: 1, estimated: false },
  };
}

const idsOf = (result: ModelResultV1) => result.toolCalls.map((call) => call.toolCallId);

describe('uniqueToolCallIds', () => {
  it('keeps ids that are already unique, and the result itself', () => {
    const used = new Set(['a']);
    const result = answer('b', 'c');
    expect(uniqueToolCallIds(result, { index: 1, used })).toBe(result);
    expect([...used]).toEqual(['a', 'b', 'c']);
  });

  it('rewrites a repeated or empty id from its step and position, keeping each call’s input', () => {
    const rewritten = uniqueToolCallIds(answer('dup', 'dup', '', ''), {
      index: 3,
      used: new Set(),
    });
    expect(idsOf(rewritten)).toEqual(['dup', 'call_3_1', 'call_3_2', 'call_3_3']);
    expect(rewritten.toolCalls.map((call) => call.input)).toEqual([
      { n: 0 },
      { n: 1 },
      { n: 2 },
      { n: 3 },
    ]);
  });

  it('rewrites an id an earlier step used, and never picks an id that is taken', () => {
    const used = new Set(['call_0']);
    // The provider's own `call_1_0` later in the step is kept; the rewrite steps around it.
    const rewritten = uniqueToolCallIds(answer('call_0', 'call_1_0'), { index: 1, used });
    expect(idsOf(rewritten)).toEqual(['call_1_0_1', 'call_1_0']);
    expect([...used].sort()).toEqual(['call_0', 'call_1_0', 'call_1_0_1']);
  });

  it('gives a resumed run the same ids: replayed steps count as used', () => {
    const first = new Set<string>();
    const step0 = uniqueToolCallIds(answer('call_0', 'call_0'), { index: 0, used: first });
    const step1 = uniqueToolCallIds(answer('call_0'), { index: 1, used: first });
    // Resumed after step 0 was checkpointed: it is replayed, step 1 asked again.
    const resumed = new Set<string>();
    recordToolCallIds(step0, resumed);
    const again = uniqueToolCallIds(answer('call_0'), { index: 1, used: resumed });
    expect(idsOf(step0)).toEqual(['call_0', 'call_0_1']);
    expect(idsOf(again)).toEqual(idsOf(step1));
    expect(idsOf(again)).toEqual(['call_1_0']);
  });
});
