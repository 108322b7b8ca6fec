import type { RunEvent } from '../domain/agents/agent-types.ts';
import type { RunSignalSink } from '../storage/runs/run-rows.ts';

/** A stream's subscription to one run's changes. */
export interface RunSubscription {
  /**
   * Resolves at once if a change arrived since the last call, else at the next one, after
   * `timeoutMs`, or on abort. Subscribing before reading means no wake-up is lost.
   */
  wait(timeoutMs: number, signal: AbortSignal): Promise<void>;
  /**
   * The events after `after` that this process committed since the stream last read, when
   * they continue `after` without a gap and nothing else changed the run; undefined when the
   * stream must read the database instead (another process or writer changed the run, a gap,
   * more than the buffer holds arrived, or a wait timed out). Spares a stream of a run executing in this
   * process the read-back of every batch it is woken for.
   */
  take(after: number): readonly RunEvent[] | undefined;
  close(): void;
}

/**
 * Cross-process signals about runs (new events, queued work, cancel requests), requests to
 * drop cached answers and to close pooled stdio MCP server processes.
 */
export interface RunSignals extends RunSignalSink {
  /**
   * `userId`: the reader, who must own the run (events are handed over only then). `known`:
   * the run's events the caller already has, from its first on, when it subscribes right
   * after committing them (the run it just created); its first `take` then needs no read.
   * A later event that does not continue them without a gap still makes the stream read.
   */
  subscribe(runId: string, userId: string, known?: readonly RunEvent[]): RunSubscription;
  onQueueChanged(listener: () => void): void;
  onCancelRequested(listener: (runId: string) => void): void;
  /**
   * Asks the other processes to drop their cached answers under a key prefix (a process not
   * listening at that moment does not hear it, and is told to check again when it listens
   * again: see {@link RunSignals.onReconnected}).
   */
  cachePurged(prefix: string): void;
  onCachePurgeRequested(listener: (prefix: string) => void): void;
  /**
   * Asks the other processes to close the stdio MCP server processes `target` names (an
   * encoded target: see tools/mcp-stdio-closer.ts). Heard like {@link RunSignals.cachePurged}.
   */
  mcpStdioClosed(target: string): void;
  onMcpStdioCloseRequested(listener: (target: string) => void): void;
  /**
   * Called when signals may have been missed: the connection that carries them between
   * processes was lost and is back (a PostgreSQL restart or failover, a terminated backend),
   * or another process dropped signals it had no room to keep (past the signals it keeps waiting to be sent). A
   * listener checks again what it depends on (a cancel request of a run it executes, say).
   * Streams and the queue are woken anyway.
   */
  onReconnected(listener: () => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}
