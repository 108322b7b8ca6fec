import type { Database, ScopedDb } from '../storage/postgres/database.ts';
import { appendEvents } from '../storage/runs/run-store.ts';

/**
 * Buffers a run's events and writes them in batches: text deltas are coalesced and flushed
 * at most every `flushMs`, other events flush at once, so streaming costs one write per
 * batch rather than one per token.
 */
export interface EventWriter {
  delta(text: string): void;
  push(type: string, data: Record<string, unknown>): void;
  flush(): Promise<void>;
  /** Appends events inside an open transaction (after flushing buffered ones). */
  appendInTransaction(
    db: ScopedDb,
    events: readonly { type: string; data: Record<string, unknown> }[],
  ): Promise<void>;
  close(): void;
}

/** Creates an {@link EventWriter} for one run, numbering from `nextSeq`. */
export function createEventWriter(options: {
  readonly database: Database;
  readonly claim: { readonly runId: string; readonly tenantId: string; readonly userId: string };
  readonly nextSeq: number;
  readonly flushMs?: number;
}): EventWriter {
  const { database, claim } = options;
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
        );
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
      void flush().catch(() => undefined);
    },
    flush,
    async appendInTransaction(db, events) {
      await flush();
      const firstSeq = seq;
      seq += events.length;
      await appendEvents(db, { ...claim, firstSeq }, events);
    },
    close() {
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
