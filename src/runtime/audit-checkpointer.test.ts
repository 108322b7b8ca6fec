import { describe, expect, it } from 'vitest';
import type { AuditCheckpointStore } from '../storage/identity/audit-checkpoint-store.ts';
import { createAuditCheckpointer } from './audit-checkpointer.ts';

describe('the audit checkpointer', () => {
  it('logs a tenant’s refusal once until it changes, or an hour passed', async () => {
    let clock = 0;
    let refusal: string | undefined = 'does not verify at event 5';
    const errors: string[] = [];
    const store = {
      enabled: true,
      due: async () => ['tenant-a'],
      checkpoint: async () => {
        if (refusal !== undefined) throw new Error(refusal);
        return undefined;
      },
    } as unknown as AuditCheckpointStore;
    const checkpointer = createAuditCheckpointer({
      store,
      due: { everyEvents: 1, intervalSeconds: 1 },
      pollMs: 10_000,
      logger: {
        warn: () => undefined,
        error: (object, message) => errors.push(`${message}: ${JSON.stringify(object)}`),
      },
      now: () => clock,
    });
    for (let round = 0; round < 30; round += 1) {
      await checkpointer.runOnce();
      clock += 10_000;
    }
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('audit checkpoint refused');
    expect(errors[0]).toContain('event 5');
    refusal = 'does not verify at event 9';
    await checkpointer.runOnce();
    await checkpointer.runOnce();
    expect(errors).toHaveLength(2);
    clock += 3_600_000;
    await checkpointer.runOnce();
    expect(errors).toHaveLength(3);
    // Verified again, then refused again: a new state, logged at once.
    refusal = undefined;
    await checkpointer.runOnce();
    refusal = 'does not verify at event 9';
    await checkpointer.runOnce();
    expect(errors).toHaveLength(4);
  });
});
