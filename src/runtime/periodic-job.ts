/** A background job that runs rounds every `pollMs`, never two at once in a process. */
export interface PeriodicJob {
  /** Starts polling (again a no-op while started). */
  start(): void;
  /** One round now, or the round in progress; resolves with what the round returns. */
  runOnce(): Promise<number>;
  /** Stops polling and waits for a round in progress. */
  stop(): Promise<void>;
}

/**
 * Runs `round` every `pollMs` (the timer does not keep the process alive). A round that is
 * still running when the next is due is joined, not overlapped; a failed round is reported to
 * `onError` and the next one runs as usual.
 */
export function createPeriodicJob(options: {
  readonly pollMs: number;
  readonly round: () => Promise<number>;
  readonly onError: (error: Error) => void;
}): PeriodicJob {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  const runOnce = () => {
    running ??= options.round().finally(() => {
      running = undefined;
    });
    return running;
  };
  return {
    start() {
      if (timer !== undefined) return;
      timer = setInterval(() => {
        runOnce().catch((error: unknown) => options.onError(error as Error));
      }, options.pollMs);
      timer.unref();
    },
    runOnce,
    async stop() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      await running?.catch(() => undefined);
    },
  };
}
