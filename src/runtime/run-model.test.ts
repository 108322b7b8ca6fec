import { describe, expect, it } from 'vitest';
import type { Agent, Run } from '../domain/agents/agent-types.ts';
import type { Database } from '../storage/postgres/database.ts';
import { createEventWriter } from './event-writer.ts';
import type { MeteredGateway, PendingSettlement } from './metered-gateway.ts';
import { createRunModel } from './run-model.ts';
import type { StepRecord } from './step-record.ts';

/**
 * When a run's model steps commit: after the call, before the core's next reach (flush), with
 * whatever commits next (commitWith), or with the finish (takeForFinish), never out of order
 * and never after a failed one.
 */
const claim = {
  runId: '00000000-0000-4000-8000-000000000001',
  tenantId: '00000000-0000-4000-8000-000000000002',
  userId: '00000000-0000-4000-8000-000000000003',
};

function modelOf(
  saveStep: (step: StepRecord) => Promise<void>,
  /** Awaited by the nth model call before it answers. */
  answerAfter: (call: number) => Promise<void> = async () => undefined,
  settled = true,
) {
  const alone: string[] = [];
  let calls = 0;
  const gateway: MeteredGateway = {
    generate: async () => {
      const call = calls++;
      const id = `call-${call}`;
      await answerAfter(call);
      const settlement: PendingSettlement = {
        call: {
          tenant: claim.tenantId,
          user: claim.userId,
          reservation: id,
          cost: 1,
          status: 'settled',
          usage: [],
        },
        committed: () => undefined,
        settleAlone: async () => {
          alone.push(id);
        },
      };
      return {
        text: 'ok',
        toolCalls: [],
        finishReason: 'stop',
        usage: { inputTokens: 1, outputTokens: 1 },
        ...(settled ? { settlement } : {}),
      } as unknown as Awaited<ReturnType<MeteredGateway['generate']>>;
    },
  };
  const events = createEventWriter({
    database: {} as Database,
    claim,
    nextSeq: 1,
    sink: {
      runChanged: () => undefined,
      queueChanged: () => undefined,
      cancelRequested: () => undefined,
    },
    flushMs: () => 60_000,
  });
  const model = createRunModel({
    database: {} as Database,
    gateway,
    saveStep: (_claim, step) => saveStep(step),
    claim,
    run: { id: claim.runId, degraded: false, apiKeyId: null } as unknown as Run,
    agent: {
      id: 'agent',
      model: 'local',
      degradation: null,
      maxOutputTokens: 10,
    } as unknown as Agent,
    role: 'member',
    deadline: new Date(Date.now() + 60_000),
    signal: new AbortController().signal,
    events,
    checkpoints: new Map(),
  });
  const generate = () => model.capability.generate({ messages: [], tools: [] });
  return { model, generate, alone };
}

describe('a run model step', () => {
  it('is saved before the next model call, in order', async () => {
    const saved: string[] = [];
    const { model, generate } = modelOf(async (step) => {
      saved.push(step.key);
    });
    await generate();
    expect(saved).toEqual([]);
    await generate();
    expect(saved).toEqual(['model:0']);
    expect((await model.takeForFinish())?.key).toBe('model:1');
    expect(saved).toEqual(['model:0']);
  });

  it('is saved at once when its call has no settlement to commit with it', async () => {
    const saved: string[] = [];
    const { model, generate } = modelOf(
      async (step) => {
        saved.push(step.key);
      },
      undefined,
      false,
    );
    await generate();
    expect(saved).toEqual(['model:0']);
    expect(await model.takeForFinish()).toBeUndefined();
  });

  it('makes every flush wait for a commit another caller is making with it', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { model, generate } = modelOf(async () => undefined);
    await generate();
    const order: string[] = [];
    const merged = model.commitWith(async (step) => {
      await gate;
      order.push(`merged ${step.key}`);
      return 1;
    });
    // A parallel tool call of the same step: it must not go on before the merged commit.
    const parallel = model.flush().then(() => order.push('parallel may run'));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(order).toEqual([]);
    release();
    await Promise.all([merged, parallel]);
    expect(order).toEqual(['merged model:0', 'parallel may run']);
  });

  it('after a failed save, refuses every later flush and settles unsaved calls on their own', async () => {
    const { model, generate, alone } = modelOf(async () => {
      throw new Error('database gone');
    });
    await generate();
    await expect(model.flush()).rejects.toThrow('database gone');
    // The next model call is never made: its flush fails first.
    await expect(generate()).rejects.toThrow('database gone');
    await expect(model.commitWith(async () => 1)).rejects.toThrow('database gone');
    await expect(model.takeForFinish()).rejects.toThrow('database gone');
    expect(alone).toEqual([]);
  });

  it('settles a call answered after a failed save on its own, unsaved', async () => {
    let answer: () => void = () => undefined;
    const late = new Promise<void>((resolve) => {
      answer = resolve;
    });
    const { model, generate, alone } = modelOf(
      async () => undefined,
      (call) => (call === 1 ? late : Promise.resolve()),
    );
    // Two model calls at once (a core may make them in parallel); the second answers late.
    const first = generate();
    const second = generate();
    await first;
    await expect(
      model.commitWith(async () => {
        throw new Error('database gone');
      }),
    ).rejects.toThrow('database gone');
    answer();
    await second;
    await expect(model.takeForFinish()).rejects.toThrow('database gone');
    expect(alone).toEqual(['call-1']);
  });
});
