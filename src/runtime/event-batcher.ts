import type { Database } from '../storage/postgres/database.ts';
import { storableJson } from '../storage/postgres/storable.ts';
import {
  appendEventBatches,
  type SerializedEventBatch,
} from '../storage/runs/event-batch-store.ts';
import { claimLostCode } from '../storage/runs/run-claim.ts';

/** One run's events to append from `firstSeq` on. */
export interface RunEventBatch {
  readonly run: SerializedEventBatch['run'];
  readonly events: readonly { readonly type: string; readonly data: Record<string, unknown> }[];
}

/**
 * Writes the buffered events of every run in the process together (group commit). A batch
 * handed over while no write is in flight goes out on the next turn of the event loop; batches
 * handed over while one is in flight wait for it and go out together in the next write: one
 * transaction and one round trip for all of them (see {@link appendEventBatches}). With one run
 * streaming this is one write per flush, as before; with 2,000 it is a few writes a second
 * instead of 2,000 transactions competing for the pool.
 */
export interface EventBatcher {
  /** Resolves once `batch` is committed; rejects with the error that kept it from committing. */
  append(batch: RunEventBatch): Promise<void>;
}

interface Waiting {
  readonly batch: SerializedEventBatch;
  readonly bytes: number;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * Bytes of SQL one write takes at most, estimated (the rest waits for the next write; a single
 * larger batch goes alone).
 */
const maxWriteBytes = 8 * 1024 * 1024;
/** Bytes of SQL text a row costs besides its data and type (ids, sequence, syntax). */
const rowOverheadBytes = 160;
/** Runs one write takes at most. */
const maxWriteBatches = 500;

/**
 * Whether `error` is about the rows written (bad data: SQLSTATE class 22; a constraint: class
 * 23; refused by row-level security: 42501; one run's claim lost: the claim fence's code)
 * rather than the database or the connection.
 */
function isRowError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (
    typeof code === 'string' &&
    (code.startsWith('22') || code.startsWith('23') || code === '42501' || code === claimLostCode)
  );
}

/** Creates the process's {@link EventBatcher} on `database`. */
export function createEventBatcher(database: Database): EventBatcher {
  let waiting: Waiting[] = [];
  let writing = false;

  /** The next write: the batches waiting longest, within the limits (at least one). */
  function takeWrite(): Waiting[] {
    let bytes = 0;
    let count = 0;
    for (const next of waiting) {
      if (count === maxWriteBatches || (count > 0 && bytes + next.bytes > maxWriteBytes)) break;
      bytes += next.bytes;
      count += 1;
    }
    const write = waiting.slice(0, count);
    waiting = waiting.slice(count);
    return write;
  }

  async function drain(): Promise<void> {
    while (waiting.length > 0) {
      const write = takeWrite();
      try {
        await appendEventBatches(
          database,
          write.map((item) => item.batch),
        );
        for (const item of write) item.resolve();
      } catch (error) {
        if (write.length === 1 || !isRowError(error)) {
          // The database or the connection failed, not one run's rows: retrying run by run
          // would only queue hundreds of transactions on a pool in trouble.
          for (const item of write) item.reject(error);
          continue;
        }
        // One run's rows must not fail the others': write them one by one (on one connection
        // at a time), so each batch commits or fails on its own.
        for (const item of write) {
          await appendEventBatches(database, [item.batch]).then(item.resolve, item.reject);
        }
      }
    }
  }

  function start(): void {
    if (writing) return;
    writing = true;
    setImmediate(() => {
      // drain settles every waiting batch itself (resolve or reject) and does not throw.
      void drain().finally(() => {
        writing = false;
        if (waiting.length > 0) start();
      });
    });
  }

  return {
    append({ run, events }) {
      if (events.length === 0) return Promise.resolve();
      let bytes = 0;
      const serialized = events.map((event) => {
        const json = storableJson(event.data) ?? 'null';
        // Escaping can double a character and UTF-8 takes up to three bytes per UTF-16 unit;
        // an upper bound is cheaper than rendering the literal twice.
        bytes += 6 * (json.length + event.type.length) + rowOverheadBytes;
        return { type: event.type, json };
      });
      return new Promise<void>((resolve, reject) => {
        waiting.push({ batch: { run, events: serialized }, bytes, resolve, reject });
        start();
      });
    },
  };
}
