/**
 * The least time (ms) of a call's deadline an attempt is started with: the least attempt
 * timeout a route may have. With less left a provider request would be sent only to be
 * abandoned (and perhaps billed), so the call ends as its deadline passed instead.
 */
export const minimumAttemptMs = 100;

/**
 * Why an attempt was cut off: `attempt`, no output within the route's attempt timeout (for a
 * non-streaming call: no answer); `idle`, a streaming attempt's output stopped for that long;
 * `deadline`, the call's deadline passed.
 */
export type AttemptCutoff = 'attempt' | 'idle' | 'deadline';

/** The clock of one attempt (see {@link startAttemptTimer}). */
export interface AttemptTimer {
  /** Aborts (with a `TimeoutError`) when the attempt is cut off. */
  readonly signal: AbortSignal;
  /** Why the attempt was cut off; undefined while it was not. */
  cutoff(): AttemptCutoff | undefined;
  /** The attempt streamed output: the timeout now bounds the gap until the next output. */
  progress(): void;
  /** Stops the clock (the attempt ended). */
  stop(): void;
}

/**
 * Starts the clock of one attempt. The attempt timeout (`timeoutMs`) bounds the time to the
 * first output; a streaming attempt that reports output (`progress`) is then bounded by the
 * same timeout between outputs, and by the call's deadline (`deadlineInMs` from now) in all, so
 * an answer still flowing is not cut off after `timeoutMs`. An attempt that streams nothing (a
 * non-streaming call) is bounded by the timeout as a whole. Output is noted with one clock
 * reading, not a timer reset per token.
 */
export function startAttemptTimer(options: {
  readonly timeoutMs: number;
  readonly deadlineInMs: number;
  readonly now: () => number;
}): AttemptTimer {
  const { timeoutMs, now } = options;
  const controller = new AbortController();
  let cutoff: AttemptCutoff | undefined;
  let lastOutput: number | undefined;
  let quietTimer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    clearTimeout(quietTimer);
    clearTimeout(deadlineTimer);
  };
  const cut = (reason: AttemptCutoff) => {
    if (cutoff !== undefined) return;
    cutoff = reason;
    stop();
    controller.abort(new DOMException(`The attempt was cut off (${reason}).`, 'TimeoutError'));
  };
  const check = () => {
    if (lastOutput === undefined) {
      cut('attempt');
      return;
    }
    const quiet = now() - lastOutput;
    if (quiet >= timeoutMs) cut('idle');
    else quietTimer = unref(setTimeout(check, timeoutMs - quiet));
  };
  const deadlineTimer = unref(setTimeout(() => cut('deadline'), options.deadlineInMs));
  // A timeout the deadline comes before can never be what cuts the attempt off.
  if (timeoutMs < options.deadlineInMs) quietTimer = unref(setTimeout(check, timeoutMs));
  return {
    signal: controller.signal,
    cutoff: () => cutoff,
    progress() {
      lastOutput = now();
    },
    stop,
  };
}

/** Lets the process exit while only the timer is left (as AbortSignal.timeout's does). */
function unref(timer: ReturnType<typeof setTimeout>): ReturnType<typeof setTimeout> {
  timer.unref?.();
  return timer;
}
