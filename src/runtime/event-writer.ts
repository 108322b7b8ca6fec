import type { RunEvent } from '../domain/agents/agent-types.ts';
import type { Database, ScopedDb } from '../storage/postgres/database.ts';
import { assertClaim, type HeldClaim, isClaimLost } from '../storage/runs/run-claim.ts';
import type { CommittedEvents, RunSignalSink } from '../storage/runs/run-rows.ts';
import { appendEvents } from '../storage/runs/run-store.ts';
import type { EventBatcher } from './event-batcher.ts';

/** An event to append. */
export interface RunEventInput {
  readonly type: string;
  readonly data: Record<string, unknown>;
}

/**
 * Buffers a run's events and writes them in batches: deltas and other events are coalesced
 * and flushed at most every `flushMs`, or earlier inside the transaction that checkpoints a
 * step, so streaming costs one write per batch rather than one per token or event.
 */
export interface EventWriter {
  delta(text: string): void;
  push(type: string, data: Record<string, unknown>): void;
  flush(): Promise<void>;
  /**
   * Runs `work` in one scoped transaction; `append` writes the buffered events plus the given
   * ones in it. Earlier batches commit first (so readers never see a gap), and no connection
   * is held while waiting for them; readers are woken after the commit. The claim fence runs
   * in the transaction at the first `append`, or before the commit when `work` appends
   * nothing: so it locks the run's row and queue entry after what `work` locked first (an
   * approval, as a decision locks it, then the run), and a refusal rolls `work` back whole.
   */
  inTransaction<T>(
    work: (db: ScopedDb, append: (events: readonly RunEventInput[]) => Promise<void>) => Promise<T>,
  ): Promise<T>;
  /**
   * Commits the buffered events plus `extra` through `write`, one call of a checkpoint
   * function that writes them in the same transaction as its own rows (see
   * storage/runs/run-checkpoints.ts). Ordering and waking as for {@link inTransaction}.
   * `write` returns its value and the events it committed (which may differ from those it was
   * given: data only the database knew), or no events when it wrote none; those stay buffered
   * and are flushed later.
   */
  checkpoint<T>(
    extra: readonly RunEventInput[],
    write: (batch: {
      readonly firstSeq: number;
      readonly events: readonly RunEventInput[];
    }) => Promise<{ readonly value: T; readonly committed?: readonly RunEventInput[] }>,
  ): Promise<T>;
  close(): void;
}

/**
 * Creates an {@link EventWriter} for one run, numbering from `nextSeq`. Every write is fenced
 * with the claim (migration 0042): once `claim.executorId` no longer holds the run's queue
 * entry, writes are refused whole (`BRG17`), and `onClaimLost` is told at the first refusal.
 */
export function createEventWriter(options: {
  readonly database: Database;
  readonly claim: HeldClaim;
  readonly nextSeq: number;
  /** Called when a write was refused because the claim is lost (the execution should stop). */
  readonly onClaimLost?: () => void;
  readonly sink: RunSignalSink;
  /** Longest a buffered event waits before it is written, in milliseconds (read per batch). */
  readonly flushMs?: () => number;
  /**
   * Writes flushed batches together with other runs' (one transaction for many runs); without
   * it each flush is a transaction of its own.
   */
  readonly batcher?: EventBatcher;
}): EventWriter {
  const { database, claim, sink } = options;
  const flushMs = options.flushMs ?? (() => 50);
  let seq = options.nextSeq;
  let pending: { type: string; data: Record<string, unknown> }[] = [];
  let text = '';
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();
  let held = false;

  /** `write`, telling `onClaimLost` when the claim fence refused it. */
  function fenced<T>(write: Promise<T>): Promise<T> {
    return write.catch((error: unknown) => {
      if (isClaimLost(error)) options.onClaimLost?.();
      throw error;
    });
  }

  /** What a batch written from `firstSeq` committed, for this process's own streams. */
  function committed(
    firstSeq: number,
    batch: readonly { type: string; data: Record<string, unknown> }[],
  ): CommittedEvents {
    const createdAt = new Date();
    const events: RunEvent[] = batch.map((event, index) => ({
      runId: claim.runId,
      seq: firstSeq + index,
      type: event.type,
      data: event.data,
      createdAt,
    }));
    return { userId: claim.userId, events };
  }

  function take() {
    if (text.length > 0) {
      pending.push({ type: 'message-delta', data: { text } });
      text = '';
    }
    const batch = pending;
    pending = [];
    const firstSeq = seq;
    seq += batch.length;
    return { batch, firstSeq };
  }

  function flush(): Promise<void> {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    const { batch, firstSeq } = take();
    if (batch.length > 0) {
      // Each batch is written after the previous one settles, so sequence numbers commit in
      // order; a failed batch surfaces to whoever awaits this flush, not to later batches.
      chain = chain
        .catch(() => undefined)
        .then(() =>
          fenced(
            options.batcher === undefined
              ? database.withScope(claim, async (db) => {
                  await assertClaim(db, claim);
                  await appendEvents(db, { ...claim, firstSeq }, batch);
                })
              : options.batcher.append({ run: { ...claim, firstSeq }, events: batch }),
          ),
        )
        .then(() => sink.runChanged(claim.runId, committed(firstSeq, batch)));
    }
    return chain;
  }

  function schedule(): void {
    if (held) return;
    timer ??= setTimeout(() => {
      timer = undefined;
      flush().catch(() => undefined);
    }, flushMs());
  }

  /**
   * Runs `work` with timed flushes held back, after every earlier batch has settled; flushing
   * resumes afterwards for whatever was buffered meanwhile.
   */
  async function whileHeld<T>(work: () => Promise<T>): Promise<T> {
    held = true;
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    try {
      await chain.catch(() => undefined);
      return await work();
    } finally {
      held = false;
      if (pending.length > 0 || text.length > 0) schedule();
    }
  }

  return {
    delta(piece) {
      text += piece;
      schedule();
    },
    push(type, data) {
      if (text.length > 0) {
        pending.push({ type: 'message-delta', data: { text } });
        text = '';
      }
      pending.push({ type, data });
      schedule();
    },
    flush,
    inTransaction(work) {
      return whileHeld(async () => {
        let written: CommittedEvents | undefined;
        const result = await fenced(
          database.withScope(claim, async (db) => {
            let checked = false;
            const check = async () => {
              if (!checked) await assertClaim(db, claim);
              checked = true;
            };
            const value = await work(db, async (events) => {
              await check();
              const { batch, firstSeq } = take();
              seq += events.length;
              const all = [...batch, ...events];
              await appendEvents(db, { ...claim, firstSeq }, all);
              written = committed(firstSeq, all);
            });
            await check();
            return value;
          }),
        );
        sink.runChanged(claim.runId, written);
        return result;
      });
    },
    checkpoint(extra, write) {
      return whileHeld(async () => {
        const { batch, firstSeq } = take();
        seq += extra.length;
        const outcome = await fenced(write({ firstSeq, events: [...batch, ...extra] }));
        if (outcome.committed !== undefined)
          sink.runChanged(claim.runId, committed(firstSeq, outcome.committed));
        else if (seq === firstSeq + batch.length + extra.length) {
          // Nothing was written and nobody numbered events since: the batch goes back.
          pending = [...batch, ...pending];
          seq = firstSeq;
        }
        return outcome.value;
      });
    },
    close() {
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
