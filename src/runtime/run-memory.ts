import type { ConsentSubject } from '../domain/consent/consent-types.ts';
import { AppError, ValidationError } from '../domain/errors.ts';
import {
  checkMemoryKey,
  type MemoryStore,
  memoryPrefixPattern,
  serialiseMemoryValue,
} from '../domain/memory/memory-types.ts';
import type { MemoryCapabilityV1, MemoryNamespaceV1 } from '../plugin-api/index.ts';
import type { RunClaim } from './run-executor-types.ts';

/** What the executor needs to give runs memory (wired in compose-runs.ts). */
export interface RunMemoryOptions {
  readonly store: MemoryStore;
  /** Throws `consent_required` unless the user granted `long_term_memory` (the consent service). */
  readonly requireLongTermConsent: (subject: ConsentSubject) => Promise<unknown>;
  /** Entries one user may hold across thread and long-term memory (`memory.maxEntriesPerUser`). */
  readonly maxEntriesPerUser: number;
}

/** The largest page {@link MemoryNamespaceV1.list} returns. */
const maxListLimit = 1_000;

/**
 * A run's memory capability: the run's user, and its thread or the user's long-term memory;
 * the core names neither, so it cannot reach another user's or thread's memory (and row-level
 * security scopes every query to the run's user besides).
 *
 * Durability (docs/writing-a-core.md): every call first awaits `commitPending` (the model and
 * tool steps not checkpointed yet), so a memory write never outlives a step a crash could
 * lose and repeat differently. Reads are not checkpointed (a resumed run reads current
 * values); writes are idempotent, so a replay writes the same again. Arguments are checked
 * before anything is committed or written: a refused call writes nothing.
 */
export function createRunMemory(options: {
  readonly memory: RunMemoryOptions;
  readonly claim: RunClaim;
  readonly threadId: string;
  /** Commits the run's pending steps (RunModel.flush); rejects when one could not be saved. */
  readonly commitPending: () => Promise<void>;
  readonly signal: AbortSignal;
}): MemoryCapabilityV1 {
  const { memory, claim, signal } = options;
  const { store } = memory;
  const user = { tenantId: claim.tenantId, userId: claim.userId };

  function namespace(threadId: string | null): MemoryNamespaceV1 {
    const subject = { ...user, threadId };
    const ready = async () => {
      if (signal.aborted) throw new AppError('run_not_active', 'The run was stopped.');
      await options.commitPending();
      if (threadId === null) await memory.requireLongTermConsent(user);
    };
    return {
      async get(key) {
        checkMemoryKey(key);
        await ready();
        return (await store.get(subject, key))?.value;
      },
      async set(key, value) {
        checkMemoryKey(key);
        const json = serialiseMemoryValue(value);
        await ready();
        await store.set(subject, { key, json, runId: claim.runId }, memory.maxEntriesPerUser);
      },
      async delete(key) {
        checkMemoryKey(key);
        await ready();
        return store.delete(subject, key);
      },
      async list(listOptions = {}) {
        const prefix = listOptions.prefix ?? '';
        const limit = listOptions.limit ?? 100;
        if (typeof prefix !== 'string' || !memoryPrefixPattern.test(prefix))
          throw new AppError('memory_key_invalid', 'A memory prefix holds only key characters.');
        if (!Number.isInteger(limit) || limit < 1 || limit > maxListLimit)
          throw new ValidationError([
            { path: 'memory.list.limit', message: `must be an integer from 1 to ${maxListLimit}` },
          ]);
        await ready();
        const entries = await store.list(subject, { prefix, limit });
        return entries.map((entry) => ({
          key: entry.key,
          value: entry.value,
          updatedAt: entry.updatedAt.toISOString(),
        }));
      },
    };
  }

  return { thread: namespace(options.threadId), user: namespace(null) };
}
