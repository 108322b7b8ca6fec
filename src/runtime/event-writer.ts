import type { Database, ScopedDb } from '../storage/postgres/database.ts';
import type { RunSignalSink } from '../storage/runs/run-rows.ts';
import { appendEvents } from '../storage/runs/run-store.ts';

/**
 * Buffers a run's events and writes them in batches: deltas and other events are coalesced
 * and flushed at most every `flushMs`, or earlier inside the transaction that checkpoints a
 * step, so streaming costs one write per batch rather than one per token or event.
 */
export interface EventWriter {
  delta(text: string): void;
  push(type: string, data: Record<string, unknown>): void;
  flush(): Promise<void>;
  /** Appends events (and everything buffered) inside an open transaction. */
  appendInTransaction(
    db: ScopedDb,
    events: readonly { type: string; data: Record<string, unknown> }[],
  ): Promise<void>;
  /** Call after the transaction given to `appendInTransaction` committed: wakes readers. */
  committed(): void;
  close(): void;
}

/** Creates an {@link EventWriter} for one run, numbering from `nextSeq`. */
export function createEventWriter(options: {
  readonly database: Database;
  readonly claim: { readonly runId: string; readonly tenantId: string; readonly userId: string };
  readonly nextSeq: number;
  readonly sink: RunSignalSink;
  readonly flushMs?: number;
}): EventWriter {
  const { database, claim, sink } = options;
  const flushMs = options.flushMs ?? 50;
  let seq = options.nextSeq;
  let pending: { type: string; data: Record<string, unknown> }[] = [];
  let text = '';
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();

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
          database.withScope(claim, (db) => appendEvents(db, { ...claim, firstSeq }, batch)),
        )
        .then(() => sink.runChanged(claim.runId));
    }
    return chain;
  }

  function schedule(): void {
    timer ??= setTimeout(() => {
      timer = undefined;
      flush().catch(() => undefined);
    }, flushMs);
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
    async appendInTransaction(db, events) {
      // Earlier batches commit first; what is still buffered joins this transaction.
      await chain.catch(() => undefined);
      if (timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
      }
      const { batch, firstSeq } = take();
      const all = [...batch, ...events];
      seq += events.length;
      await appendEvents(db, { ...claim, firstSeq }, all);
    },
    committed() {
      sink.runChanged(claim.runId);
    },
    close() {
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
