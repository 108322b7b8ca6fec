import pg from 'pg';
import type { RunEvent } from '../domain/agents/agent-types.ts';
import {
  type CommittedEvents,
  cachePurgeChannel,
  mcpStdioCloseChannel,
  resyncChannel,
  runCancelChannel,
  runEventsChannel,
  runQueueChannel,
} from '../storage/runs/run-rows.ts';

import type { RunSignals } from './run-signals-types.ts';

export type { RunSignals, RunSubscription } from './run-signals-types.ts';

interface Subscriber {
  readonly userId: string;
  notified: boolean;
  wake: (() => void) | undefined;
  /** Committed events not yet taken (bounded by {@link maxBuffered}). */
  buffer: RunEvent[];
  /** Set when a change came without its events: the next read goes to the database. */
  mustRead: boolean;
}

/** Events a subscriber holds for a slow stream before it falls back to reading them back. */
const maxBuffered = 1_000;

const maxPayload = 7_000;

/**
 * Signals a process keeps waiting to be sent (while its signal connection is down, say). Past
 * this, they are dropped and one `brigade_resync` is sent instead when the connection is
 * back, on which every other process checks again what it depends on, as after reconnecting:
 * memory stays bounded and nothing is lost but a wake-up's precision.
 */
const defaultMaxOutgoing = 10_000;

/** First and longest pause before connecting the signal connection again after a loss. */
const minReconnectMs = 100;
const maxReconnectMs = 5_000;

/**
 * One PostgreSQL connection per process LISTENs for run signals and sends this process's own
 * as batched NOTIFYs (one statement for every channel every `batchMs`), outside any writing
 * transaction. Payloads carry run ids only; readers read under their own RLS scope.
 *
 * With `crossProcess: false` (the embedded database, which one server process owns: its data
 * directory's lock refuses a second) there is no other process to tell or hear from: signals
 * are delivered in this process only, with no connection and no NOTIFY.
 */
export function createRunSignals(options: {
  readonly connectionString: string;
  readonly onError: (error: Error) => void;
  readonly batchMs?: number;
  /** False: this is the only process serving the database (default true). */
  readonly crossProcess?: boolean;
  /** Signals kept waiting to be sent before they give way to one resync (tests lower it). */
  readonly maxOutgoing?: number;
}): RunSignals {
  const crossProcess = options.crossProcess ?? true;
  const batchMs = options.batchMs ?? 10;
  const subscribers = new Map<string, Set<Subscriber>>();
  const queueListeners: Array<() => void> = [];
  const cancelListeners: Array<(runId: string) => void> = [];
  const purgeListeners: Array<(prefix: string) => void> = [];
  const stdioCloseListeners: Array<(target: string) => void> = [];
  const reconnectListeners: Array<() => void> = [];
  const outgoing = new Map<string, Set<string>>([
    [runEventsChannel, new Set()],
    [runCancelChannel, new Set()],
    [runQueueChannel, new Set()],
    [cachePurgeChannel, new Set()],
    [mcpStdioCloseChannel, new Set()],
  ]);
  let client: pg.Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  let sending: Promise<void> = Promise.resolve();
  let stopping = false;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let reconnectMs = minReconnectMs;
  const maxOutgoing = options.maxOutgoing ?? defaultMaxOutgoing;
  /** Signals were dropped: a resync goes out with the next batch instead. */
  let resyncPending = false;

  function wakeRun(runId: string, committed?: CommittedEvents): void {
    for (const subscriber of subscribers.get(runId) ?? []) {
      if (
        committed === undefined ||
        committed.userId !== subscriber.userId ||
        subscriber.buffer.length + committed.events.length > maxBuffered
      ) {
        subscriber.mustRead = true;
        subscriber.buffer = [];
      } else if (!subscriber.mustRead) subscriber.buffer.push(...committed.events);
      subscriber.notified = true;
      subscriber.wake?.();
    }
  }

  function send(): void {
    timer = undefined;
    const connection = client;
    if (connection === undefined) return;
    // Every channel's batch in one statement: one round trip per batch window, not one per
    // channel and payload.
    const values: string[] = [];
    const batch: [string, string[]][] = [];
    const resync = resyncPending;
    resyncPending = false;
    if (resync) values.push(resyncChannel, '');
    for (const [channel, ids] of outgoing) {
      if (ids.size === 0) continue;
      batch.push([channel, [...ids]]);
      let current = '';
      for (const id of ids) {
        if (current !== '' && current.length + id.length + 1 > maxPayload) {
          values.push(channel, current);
          current = '';
        }
        current = current === '' ? id : `${current},${id}`;
      }
      values.push(channel, current);
      ids.clear();
    }
    if (values.length === 0) return;
    const calls = Array.from(
      { length: values.length / 2 },
      (_, index) => `pg_notify($${2 * index + 1}, $${2 * index + 2})`,
    );
    sending = sending
      .then(() => connection.query(`select ${calls.join(', ')}`, values))
      .then(
        () => undefined,
        (error: Error) => {
          options.onError(error);
          // The connection failed, not the statement: send these again once it is back.
          if (!(error instanceof pg.DatabaseError)) {
            if (resync) resyncPending = true;
            for (const [channel, ids] of batch) for (const id of ids) keep(channel, id);
          }
        },
      );
  }

  /** Keeps a signal to send, or drops everything waiting for one resync when full. */
  function keep(channel: string, id: string): void {
    // Dropped signals are covered by the resync: it is heard after whatever they signalled.
    if (resyncPending) return;
    outgoing.get(channel)?.add(id);
    let waiting = 0;
    for (const ids of outgoing.values()) waiting += ids.size;
    if (waiting <= maxOutgoing) return;
    for (const ids of outgoing.values()) ids.clear();
    resyncPending = true;
    options.onError(
      new Error(
        `more than ${maxOutgoing} signals waited to be sent; they were dropped for one resync`,
      ),
    );
  }

  function enqueue(channel: string, id: string): void {
    if (!crossProcess) return;
    keep(channel, id);
    timer ??= setTimeout(send, batchMs);
  }

  function receive(channel: string, payload: string): void {
    const ids = payload === '' ? [] : payload.split(',');
    if (channel === runEventsChannel) for (const id of ids) wakeRun(id);
    if (channel === runQueueChannel) for (const listener of queueListeners) listener();
    if (channel === runCancelChannel)
      for (const id of ids) for (const listener of cancelListeners) listener(id);
    if (channel === cachePurgeChannel)
      for (const prefix of ids) for (const listener of purgeListeners) listener(prefix);
    if (channel === mcpStdioCloseChannel)
      for (const target of ids) for (const listener of stdioCloseListeners) listener(target);
    if (channel === resyncChannel) resync();
  }

  /** Connects, LISTENs, and goes on reconnecting whenever the connection is lost. */
  async function connect(): Promise<pg.Client> {
    const created = new pg.Client({
      connectionString: options.connectionString,
      application_name: 'brigade-signals',
      connectionTimeoutMillis: 10_000,
    });
    const lost = (error?: Error) => {
      if (error !== undefined) options.onError(error);
      if (client !== created) return;
      client = undefined;
      created.end().catch(() => undefined);
      scheduleReconnect();
    };
    created.on('error', lost);
    created.on('end', () => lost());
    created.on('notification', (message) => {
      // This process's own NOTIFYs (sent on this connection) were delivered locally already,
      // with their events; read back, they would only send its streams to the database.
      if (message.processId === (created as unknown as { processID?: number }).processID) return;
      receive(message.channel, message.payload ?? '');
    });
    try {
      await created.connect();
      await created.query(
        [
          runEventsChannel,
          runQueueChannel,
          runCancelChannel,
          cachePurgeChannel,
          mcpStdioCloseChannel,
          resyncChannel,
        ]
          .map((channel) => `listen ${channel}`)
          .join('; '),
      );
    } catch (error) {
      await created.end().catch(() => undefined);
      throw error;
    }
    return created;
  }

  function scheduleReconnect(): void {
    if (stopping || reconnectTimer !== undefined) return;
    reconnectTimer = setTimeout(() => {
      connect().then(
        (created) => {
          reconnectTimer = undefined;
          if (stopping) {
            void created.end().catch(() => undefined);
            return;
          }
          client = created;
          reconnectMs = minReconnectMs;
          resync();
        },
        (error: Error) => {
          reconnectTimer = undefined;
          options.onError(error);
          reconnectMs = Math.min(reconnectMs * 2, maxReconnectMs);
          scheduleReconnect();
        },
      );
    }, reconnectMs);
    reconnectTimer.unref();
  }

  /**
   * After a gap in listening, or another process's dropped signals: whatever was signalled
   * meanwhile is looked at again.
   */
  function resync(): void {
    for (const runId of [...subscribers.keys()]) wakeRun(runId);
    for (const listener of queueListeners) listener();
    for (const listener of reconnectListeners) listener();
    if (resyncPending || [...outgoing.values()].some((ids) => ids.size > 0))
      timer ??= setTimeout(send, batchMs);
  }

  return {
    runChanged(runId, committed) {
      wakeRun(runId, committed);
      enqueue(runEventsChannel, runId);
    },
    queueChanged(changed) {
      if (changed?.remoteOnly !== true) for (const listener of queueListeners) listener();
      enqueue(runQueueChannel, '*');
    },
    cancelRequested(runId) {
      for (const listener of cancelListeners) listener(runId);
      enqueue(runCancelChannel, runId);
    },
    onQueueChanged: (listener) => queueListeners.push(listener),
    onCancelRequested: (listener) => cancelListeners.push(listener),
    cachePurged: (prefix) => enqueue(cachePurgeChannel, prefix),
    onCachePurgeRequested: (listener) => purgeListeners.push(listener),
    mcpStdioClosed: (target) => enqueue(mcpStdioCloseChannel, target),
    onMcpStdioCloseRequested: (listener) => stdioCloseListeners.push(listener),
    onReconnected: (listener) => reconnectListeners.push(listener),
    subscribe(runId, userId, known) {
      // A new subscriber reads the database first (events before it subscribed are not here),
      // unless the caller hands it the run's events so far.
      const subscriber: Subscriber = {
        userId,
        notified: false,
        wake: undefined,
        buffer: known === undefined ? [] : [...known],
        mustRead: known === undefined,
      };
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
            const waitTimer = setTimeout(() => {
              // Nothing came: read the database anyway, in case a signal was lost.
              subscriber.mustRead = true;
              done();
            }, timeoutMs);
            signal.addEventListener('abort', done, { once: true });
            subscriber.wake = done;
          });
        },
        take(after) {
          const { buffer } = subscriber;
          subscriber.buffer = [];
          if (subscriber.mustRead) {
            subscriber.mustRead = false;
            return undefined;
          }
          const fresh = buffer.filter((event) => event.seq > after);
          // Nothing new since the last take, and nothing else changed: no need to read.
          if (fresh.length === 0) return [];
          for (const [index, event] of fresh.entries())
            if (event.seq !== after + 1 + index) return undefined;
          return fresh;
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
      if (!crossProcess) return;
      stopping = false;
      client = await connect();
    },
    async stop() {
      stopping = true;
      if (reconnectTimer !== undefined) clearTimeout(reconnectTimer);
      reconnectTimer = undefined;
      if (timer !== undefined) {
        clearTimeout(timer);
        send();
      }
      await sending;
      for (const set of subscribers.values()) for (const subscriber of set) subscriber.wake?.();
      const connection = client;
      client = undefined;
      await connection?.end().catch(() => undefined);
    },
  };
}
