import pg from 'pg';
import {
  type RunSignalSink,
  runCancelChannel,
  runEventsChannel,
  runQueueChannel,
} from '../storage/runs/run-rows.ts';

/** A stream's subscription to one run's changes. */
export interface RunSubscription {
  /**
   * Resolves at once if a change arrived since the last call, else at the next one, after
   * `timeoutMs`, or on abort. Subscribing before reading means no wake-up is lost.
   */
  wait(timeoutMs: number, signal: AbortSignal): Promise<void>;
  close(): void;
}

/** Cross-process signals about runs: new events, queued work, cancel requests. */
export interface RunSignals extends RunSignalSink {
  subscribe(runId: string): RunSubscription;
  onQueueChanged(listener: () => void): void;
  onCancelRequested(listener: (runId: string) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface Subscriber {
  notified: boolean;
  wake: (() => void) | undefined;
}

const maxPayload = 7_000;

/**
 * One PostgreSQL connection per process LISTENs for run signals and sends this process's own
 * as batched NOTIFYs (at most one per channel every `batchMs`), outside any writing
 * transaction. Payloads carry run ids only; readers read under their own RLS scope.
 */
export function createRunSignals(options: {
  readonly connectionString: string;
  readonly onError: (error: Error) => void;
  readonly batchMs?: number;
}): RunSignals {
  const batchMs = options.batchMs ?? 10;
  const subscribers = new Map<string, Set<Subscriber>>();
  const queueListeners: Array<() => void> = [];
  const cancelListeners: Array<(runId: string) => void> = [];
  const outgoing = new Map<string, Set<string>>([
    [runEventsChannel, new Set()],
    [runCancelChannel, new Set()],
    [runQueueChannel, new Set()],
  ]);
  let client: pg.Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  let sending: Promise<void> = Promise.resolve();

  function wakeRun(runId: string): void {
    for (const subscriber of subscribers.get(runId) ?? []) {
      subscriber.notified = true;
      subscriber.wake?.();
    }
  }

  function send(): void {
    timer = undefined;
    const connection = client;
    if (connection === undefined) return;
    for (const [channel, ids] of outgoing) {
      if (ids.size === 0) continue;
      const payloads: string[] = [];
      let current = '';
      for (const id of ids) {
        if (current.length + id.length + 1 > maxPayload) {
          payloads.push(current);
          current = '';
        }
        current = current === '' ? id : `${current},${id}`;
      }
      payloads.push(current);
      ids.clear();
      for (const payload of payloads) {
        sending = sending
          .then(() => connection.query('select pg_notify($1, $2)', [channel, payload]))
          .then(
            () => undefined,
            (error: Error) => options.onError(error),
          );
      }
    }
  }

  function enqueue(channel: string, id: string): void {
    outgoing.get(channel)?.add(id);
    timer ??= setTimeout(send, batchMs);
  }

  function receive(channel: string, payload: string): void {
    const ids = payload === '' ? [] : payload.split(',');
    if (channel === runEventsChannel) for (const id of ids) wakeRun(id);
    if (channel === runQueueChannel) for (const listener of queueListeners) listener();
    if (channel === runCancelChannel)
      for (const id of ids) for (const listener of cancelListeners) listener(id);
  }

  return {
    runChanged(runId) {
      wakeRun(runId);
      enqueue(runEventsChannel, runId);
    },
    queueChanged() {
      for (const listener of queueListeners) listener();
      enqueue(runQueueChannel, '*');
    },
    cancelRequested(runId) {
      for (const listener of cancelListeners) listener(runId);
      enqueue(runCancelChannel, runId);
    },
    onQueueChanged: (listener) => queueListeners.push(listener),
    onCancelRequested: (listener) => cancelListeners.push(listener),
    subscribe(runId) {
      const subscriber: Subscriber = { notified: false, wake: undefined };
      let set = subscribers.get(runId);
      if (set === undefined) {
        set = new Set();
        subscribers.set(runId, set);
      }
      set.add(subscriber);
      return {
        wait(timeoutMs, signal) {
          if (subscriber.notified || signal.aborted) {
            subscriber.notified = false;
            return Promise.resolve();
          }
          return new Promise((resolve) => {
            const done = () => {
              clearTimeout(waitTimer);
              signal.removeEventListener('abort', done);
              subscriber.wake = undefined;
              subscriber.notified = false;
              resolve();
            };
            const waitTimer = setTimeout(done, timeoutMs);
            signal.addEventListener('abort', done, { once: true });
            subscriber.wake = done;
          });
        },
        close() {
          subscriber.wake?.();
          const current = subscribers.get(runId);
          current?.delete(subscriber);
          if (current?.size === 0) subscribers.delete(runId);
        },
      };
    },
    async start() {
      const created = new pg.Client({ connectionString: options.connectionString });
      created.on('error', options.onError);
      created.on('notification', (message) => receive(message.channel, message.payload ?? ''));
      await created.connect();
      await created.query(
        `listen ${runEventsChannel}; listen ${runQueueChannel}; listen ${runCancelChannel}`,
      );
      client = created;
    },
    async stop() {
      if (timer !== undefined) {
        clearTimeout(timer);
        send();
      }
      await sending;
      for (const set of subscribers.values()) for (const subscriber of set) subscriber.wake?.();
      await client?.end().catch(() => undefined);
      client = undefined;
    },
  };
}
