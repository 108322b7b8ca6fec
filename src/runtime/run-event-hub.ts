import pg from 'pg';
import { runEventsChannel } from '../storage/runs/run-rows.ts';

/** Wakes stream readers when a run (executing in any process) has new events. */
export interface RunEventHub {
  /** Resolves at the next notification for `runId`, or after `timeoutMs`, or on abort. */
  waitFor(runId: string, options: { timeoutMs: number; signal: AbortSignal }): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * One LISTEN connection per process fans notifications out to the streams waiting on each
 * run. Notifications carry only a run id; readers then read events under their own RLS scope.
 */
export function createRunEventHub(options: {
  readonly connectionString: string;
  readonly role?: string | undefined;
  readonly onError: (error: Error) => void;
}): RunEventHub {
  const waiters = new Map<string, Set<() => void>>();
  let client: pg.Client | undefined;
  return {
    waitFor(runId, { timeoutMs, signal }) {
      return new Promise((resolve) => {
        let set = waiters.get(runId);
        if (set === undefined) {
          set = new Set();
          waiters.set(runId, set);
        }
        const waiterSet = set;
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          waiterSet.delete(done);
          if (waiterSet.size === 0) waiters.delete(runId);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener('abort', done, { once: true });
        waiterSet.add(done);
      });
    },
    async start() {
      const created = new pg.Client({
        connectionString: options.connectionString,
        ...(options.role === undefined ? {} : { options: `-c role=${options.role}` }),
      });
      created.on('error', options.onError);
      created.on('notification', (message) => {
        if (message.payload === undefined) return;
        for (const wake of [...(waiters.get(message.payload) ?? [])]) wake();
      });
      await created.connect();
      await created.query(`listen ${runEventsChannel}`);
      client = created;
    },
    async stop() {
      for (const set of waiters.values()) for (const wake of [...set]) wake();
      await client?.end().catch(() => undefined);
    },
  };
}
