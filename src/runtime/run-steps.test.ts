import { describe, expect, it } from 'vitest';
import type { Database } from '../storage/postgres/database.ts';
import type { RunCheckpoints } from '../storage/runs/run-checkpoints.ts';
import { unkeyedArgumentsHasher } from '../storage/tools/arguments-hasher.ts';
import { createEventWriter } from './event-writer.ts';
import type { PendingSettlement } from './metered-gateway.ts';
import { createStepRecorder } from './run-steps.ts';

const claim = {
  runId: '00000000-0000-4000-8000-000000000001',
  tenantId: '00000000-0000-4000-8000-000000000002',
  userId: '00000000-0000-4000-8000-000000000003',
};

/** A settlement that counts how it was completed. */
function settlement() {
  const seen = { committed: [] as number[], alone: 0 };
  const pending: PendingSettlement = {
    call: {
      tenant: claim.tenantId,
      user: claim.userId,
      reservation: '00000000-0000-4000-8000-000000000004',
      cost: 1000,
      status: 'settled',
      usage: [],
    },
    committed: (crossed) => seen.committed.push(crossed),
    settleAlone: async () => {
      seen.alone += 1;
    },
  };
  return { pending, seen };
}

/** A recorder whose checkpoints are `saveStep` (the database's answer, or its failure). */
function recorder(saveStep: RunCheckpoints['saveStep']) {
  const { saveStep: save } = createStepRecorder({
    checkpoints: {
      saveStep,
      saveStepThenConsumeQuota: async () => ({ crossed: 0, verdict: { ok: true } }),
      saveStepThenReserve: async () => undefined,
      finish: async () => undefined,
    },
    tools: [],
    toolOutputLimit: 1000,
    toolTimeoutMs: 1000,
    approvalTtlMs: 1000,
    argumentsHasher: unkeyedArgumentsHasher,
  });
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
  return (pending: PendingSettlement) =>
    save(claim, { events, key: 'model:0', kind: 'model', output: {}, settlement: pending });
}

describe('a model step and its settlement', () => {
  it('hands the settlement to the checkpoint and reports the thresholds it crossed', async () => {
    const sent: unknown[] = [];
    const save = recorder(async (_run, _batch, step) => {
      sent.push(step.settlement);
      return 2;
    });
    const { pending, seen } = settlement();
    await save(pending);
    expect(sent).toEqual([pending.call]);
    expect(seen).toEqual({ committed: [2], alone: 0 });
  });

  it('settles the call on its own when the checkpoint fails, and still fails the step', async () => {
    const save = recorder(async () => {
      throw new Error('connection lost');
    });
    const { pending, seen } = settlement();
    await expect(save(pending)).rejects.toThrow('connection lost');
    expect(seen).toEqual({ committed: [], alone: 1 });
  });
});
