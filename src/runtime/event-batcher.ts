import type { Database } from '../storage/postgres/database.ts';
import { appendEventBatches, type SerializedEventBatch } from '../storage/runs/run-store.ts';

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
  readonly chars: number;
  resolve(): void;
  reject(error: unknown): void;
}

/** Characters of event data one write takes at most (the rest waits for the next write). */
const maxWriteChars = 4 * 1024 * 1024;
/** Runs one write takes at most. */
const maxWriteBatches = 500;

/** Creates the process's {@link EventBatcher} on `database`. */
export function createEventBatcher(database: Database): EventBatcher {
  let waiting: Waiting[] = [];
  let writing = false;

  /** The next write: the batches waiting longest, within the limits (at least one). */
  function takeWrite(): Waiting[] {
    let chars = 0;
    let count = 0;
    for (const next of waiting) {
      if (count === maxWriteBatches || (count > 0 && chars + next.chars > maxWriteChars)) break;
      chars += next.chars;
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
        if (write.length === 1) {
          write[0]?.reject(error);
          continue;
        }
        // One run's rows must not fail the others': write them one by one, so each batch
        // commits or fails on its own.
        await Promise.all(
          write.map((item) =>
            appendEventBatches(database, [item.batch]).then(item.resolve, item.reject),
          ),
        );
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
      let chars = 0;
      const serialized = events.map((event) => {
        const json = JSON.stringify(event.data);
        chars += json.length + event.type.length;
        return { type: event.type, json };
      });
      return new Promise<void>((resolve, reject) => {
        waiting.push({ batch: { run, events: serialized }, chars, resolve, reject });
        start();
      });
    },
  };
}
