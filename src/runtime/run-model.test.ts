import { describe, expect, it } from 'vitest';
import type { Agent, Run } from '../domain/agents/agent-types.ts';
import type { ReserveRow } from '../storage/guards/budget-calls.ts';
import type { Database } from '../storage/postgres/database.ts';
import { createEventWriter } from './event-writer.ts';
import type { MeteredGateway, MeteredRequest, PendingSettlement } from './metered-gateway.ts';
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
  options: {
    /** Awaited by the nth model call before it answers. */
    readonly answerAfter?: (call: number) => Promise<void>;
    readonly settled?: boolean;
    /** What the gateway does before the call, as the metered gateway would (see below). */
    readonly before?: (request: MeteredRequest) => Promise<void>;
    readonly saveStepThenReserve?: (step: StepRecord) => Promise<ReserveRow | undefined>;
  } = {},
) {
  const { answerAfter = async () => undefined, settled = true } = options;
  const alone: string[] = [];
  let calls = 0;
  const gateway: MeteredGateway = {
    generate: async (request) => {
      const call = calls++;
      const id = `call-${call}`;
      await options.before?.(request);
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
    saveStepThenReserve: async (_claim, step) =>
      (await options.saveStepThenReserve?.(step)) ?? undefined,
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
  return { model, generate, alone, events };
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
      { settled: false },
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
    const { model, generate, alone } = modelOf(async () => undefined, {
      answerAfter: (call) => (call === 1 ? late : Promise.resolve()),
    });
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

/** A reservation as the metered gateway sends it through `reserveVia`. */
const reservation = {
  tenant: claim.tenantId,
  user: claim.userId,
  amount: 10,
  key: null,
  agent: 'agent',
  id: '00000000-0000-4000-8000-000000000009',
  run: claim.runId,
  expires: new Date(),
};
const reserved: ReserveRow = { res: { ok: true, counters: [] }, reservation_id: null };

function toolStep(model: { events: StepRecord['events'] }, key: string): StepRecord {
  return { events: model.events, key, kind: 'tool', output: { status: 'ok', output: 42 } };
}

describe('a held tool step', () => {
  it("commits with the next model call's budget reservation, in one statement", async () => {
    const saved: string[] = [];
    const merged: string[] = [];
    const fallbacks: (ReserveRow | undefined)[] = [];
    const { model, generate, events } = modelOf(
      async (step) => {
        saved.push(step.key);
      },
      {
        before: async (request) => {
          fallbacks.push(await request.reserveVia?.(reservation));
        },
        saveStepThenReserve: async (step) => {
          merged.push(step.key);
          return reserved;
        },
      },
    );
    await generate();
    await model.commitWith(async () => 0);
    await model.hold(toolStep({ events }, 'tool:a'));
    expect(merged).toEqual([]);
    await generate();
    expect(merged).toEqual(['tool:a']);
    expect(saved).toEqual([]);
    expect(fallbacks).toEqual([undefined, reserved]);
  });

  it('is saved on its own when the model call fails before it reserves, and the failure is kept', async () => {
    const saved: string[] = [];
    const { model, generate, events } = modelOf(
      async (step) => {
        saved.push(step.key);
      },
      {
        before: async () => {
          throw new Error('context_length_exceeded');
        },
      },
    );
    await model.hold(toolStep({ events }, 'tool:a'));
    await expect(generate()).rejects.toThrow('context_length_exceeded');
    expect(saved).toEqual(['tool:a']);
  });

  it('is saved on its own before the call waits for a rate limit, never twice', async () => {
    const saved: string[] = [];
    const merged: string[] = [];
    const { model, generate, events } = modelOf(
      async (step) => {
        saved.push(step.key);
      },
      {
        before: async (request) => {
          await request.beforeWait?.();
          expect(saved).toEqual(['tool:a']);
          // Already committed: the reservation goes out the usual way.
          expect(await request.reserveVia?.(reservation)).toBeUndefined();
        },
        saveStepThenReserve: async (step) => {
          merged.push(step.key);
          return reserved;
        },
      },
    );
    await model.hold(toolStep({ events }, 'tool:a'));
    await generate();
    expect(saved).toEqual(['tool:a']);
    expect(merged).toEqual([]);
  });

  it('is saved by a flush or the finish when no model call follows, in order', async () => {
    const saved: string[] = [];
    const { model, generate, events } = modelOf(async (step) => {
      saved.push(step.key);
    });
    await generate();
    await model.hold(toolStep({ events }, 'tool:a'));
    await model.hold(toolStep({ events }, 'tool:b'));
    // The last step is no model step: nothing rides on the quota statement.
    expect(await model.commitWith(async () => 1)).toBeUndefined();
    expect(saved).toEqual(['model:0', 'tool:a', 'tool:b']);
    await model.hold(toolStep({ events }, 'tool:c'));
    expect(await model.takeForFinish()).toBeUndefined();
    expect(saved).toEqual(['model:0', 'tool:a', 'tool:b', 'tool:c']);
  });

  it("fails the run when its commit with the reservation fails, and settles the answer's call alone", async () => {
    const { model, generate, events, alone } = modelOf(async () => undefined, {
      before: async (request) => {
        await request.reserveVia?.(reservation).catch(() => undefined);
      },
      saveStepThenReserve: async () => {
        throw new Error('connection lost');
      },
    });
    await model.hold(toolStep({ events }, 'tool:a'));
    await expect(generate()).rejects.toThrow('connection lost');
    expect(alone).toEqual(['call-0']);
    await expect(model.flush()).rejects.toThrow('connection lost');
  });
});

describe('a held tool step the core does not follow with a model call at once', () => {
  it('is saved on its own before the core waits for anything', async () => {
    const saved: string[] = [];
    const { model, events } = modelOf(async (step) => {
      saved.push(step.key);
    });
    await model.hold(toolStep({ events }, 'tool:a'));
    expect(saved).toEqual([]);
    // The core waits (a timer): the step does not wait with it.
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(saved).toEqual(['tool:a']);
    await model.flush();
    expect(saved).toEqual(['tool:a']);
  });
});
