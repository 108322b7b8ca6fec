import { CircuitState } from 'cockatiel';
import { AppError } from '../domain/errors.ts';
import { delay } from './abortable-delay.ts';
import { minimumAttemptMs } from './attempt-timer.ts';
import type { Capacity, DeploymentState } from './deployment-state.ts';
import type { ModelRouteDefinition, RouteDeployment } from './model-routes.ts';
import type { ErrorClass } from './route-failures.ts';

/** A deployment of a route with its state (health and capacity). */
export interface Candidate {
  readonly deployment: RouteDeployment;
  readonly state: DeploymentState;
}

/**
 * Resolves after `ms`, or as soon as a call on one of the `full` capacities ends (see
 * {@link releasePlace}); rejects with the signal's reason when it aborts.
 */
function waitForPlace(
  full: readonly Capacity[],
  options: { readonly ms: number; readonly signal: AbortSignal },
): Promise<void> {
  const { signal } = options;
  if (full.length === 0) return delay(options.ms, signal);
  return new Promise((resolve, reject) => {
    const finish = (error?: unknown) => {
      clearTimeout(timer);
      for (const capacity of full) capacity.waiting.delete(wake);
      signal.removeEventListener('abort', onAbort);
      if (error === undefined) resolve();
      else reject(error);
    };
    const wake = () => finish();
    const onAbort = () => finish(signal.reason);
    if (signal.aborted) {
      onAbort();
      return;
    }
    const timer = setTimeout(wake, options.ms);
    for (const capacity of full) capacity.waiting.add(wake);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A call on `capacity` ended: one caller waiting for a place (the longest waiting) looks
 * again. One, not all: the place is one, and the others' own wait ends within a second.
 */
export function releasePlace(capacity: Capacity): void {
  capacity.inFlight -= 1;
  for (const wake of capacity.waiting) {
    wake();
    return;
  }
}

/**
 * The deployment a call goes to among `candidates` (all available), by the route's strategy:
 * `least-busy` (fewest calls in flight), `lowest-latency` (moving average; an unmeasured
 * deployment counts as fastest, so every one gets measured) or `weighted` (by `weight`, drawn
 * with `random`).
 */
export function pickDeployment(
  route: ModelRouteDefinition,
  candidates: readonly Candidate[],
  random: () => number,
): Candidate | undefined {
  if (candidates.length <= 1) return candidates[0];
  switch (route.strategy) {
    case 'least-busy':
      return candidates.reduce((best, next) =>
        next.state.capacity.inFlight < best.state.capacity.inFlight ? next : best,
      );
    case 'lowest-latency':
      return candidates.reduce((best, next) =>
        (next.state.capacity.latencyMs ?? 0) < (best.state.capacity.latencyMs ?? 0) ? next : best,
      );
    case 'weighted': {
      const total = candidates.reduce((sum, next) => sum + (next.deployment.weight ?? 1), 0);
      let point = random() * total;
      for (const candidate of candidates) {
        point -= candidate.deployment.weight ?? 1;
        if (point < 0) return candidate;
      }
      return candidates[candidates.length - 1];
    }
  }
}

/**
 * Whether a route hands a call over to a fallback (on `rate_limited`) at once when every
 * deployment is full or cooling down after a provider's Retry-After, rather than wait.
 */
export function fallsOverWhenFull(route: ModelRouteDefinition): boolean {
  return route.fallbacks.some((fallback) => fallback.on.includes('rate_limited'));
}

/**
 * Whether a route's deployments may take a call now (breaker, cooldown, `maxConcurrency`,
 * `rpm`), and waiting until one may (see model-router.ts).
 */
export function createAvailability(now: () => number) {
  function available(deployment: RouteDeployment, state: DeploymentState): boolean {
    const time = now();
    const { capacity, health } = state;
    while (capacity.recent.length > 0 && (capacity.recent[0] ?? 0) <= time - 60_000)
      capacity.recent.shift();
    const breaker = health.breaker.state;
    // Open: closed to traffic until `halfOpenAfterMs`, then one probe (cockatiel turns the
    // breaker half-open when that call starts); half-open: only while no probe is in flight.
    const breakerAllows =
      breaker === CircuitState.Closed ||
      (breaker === CircuitState.Open && time - health.openedAt >= health.halfOpenAfterMs) ||
      (breaker === CircuitState.HalfOpen && health.inFlight === 0);
    return (
      breakerAllows &&
      capacity.coolUntil <= time &&
      (deployment.maxConcurrency === undefined || capacity.inFlight < deployment.maxConcurrency) &&
      (deployment.rpm === undefined || capacity.recent.length < deployment.rpm)
    );
  }

  /**
   * The deployments of a route available now, after waiting, within the deadline and without
   * using up an attempt, for a cooldown (a provider's Retry-After) or a free place under
   * `maxConcurrency`/`rpm` to end. Deployments behind an open breaker are not waited for. A full
   * route with a fallback on `rate_limited` hands over to it at once instead of waiting; so
   * does a route where no place can free while {@link minimumAttemptMs} of the deadline remain.
   * Then the failure, with how long until a deployment may take calls again.
   */
  async function awaitCandidates(
    route: ModelRouteDefinition,
    deployments: readonly Candidate[],
    context: { readonly deadline: number; readonly signal: AbortSignal },
  ): Promise<Candidate[] | { error: AppError; kind: ErrorClass }> {
    for (;;) {
      const candidates = deployments.filter(({ deployment, state }) =>
        available(deployment, state),
      );
      if (candidates.length > 0) return candidates;
      const time = now();
      /** The earliest a deployment may take a call again. */
      let soonest = Number.POSITIVE_INFINITY;
      /** When to look again unless a call's end wakes this caller first. */
      let lookAgain = Number.POSITIVE_INFINITY;
      let reopens = Number.POSITIVE_INFINITY;
      const full: Capacity[] = [];
      for (const { deployment, state } of deployments) {
        const { breaker, openedAt, halfOpenAfterMs } = state.health;
        if (breaker.state === CircuitState.Open || breaker.state === CircuitState.HalfOpen) {
          reopens = Math.min(reopens, Math.max(openedAt + halfOpenAfterMs, time + 1_000));
          continue;
        }
        const { capacity } = state;
        // A cooldown ends, or a minute after the oldest call start an `rpm` counts.
        let free = capacity.coolUntil;
        if (deployment.rpm !== undefined && capacity.recent.length >= deployment.rpm)
          free = Math.max(free, (capacity.recent[0] ?? time) + 60_000);
        // Full: a place frees when a call ends, any moment (the call that ends wakes a waiter;
        // looked at again within a second all the same).
        if (
          deployment.maxConcurrency !== undefined &&
          capacity.inFlight >= deployment.maxConcurrency
        ) {
          full.push(capacity);
          lookAgain = Math.min(lookAgain, Math.max(free, time + 1_000));
          free = Math.max(free, time + 1);
        } else lookAgain = Math.min(lookAgain, free);
        soonest = Math.min(soonest, free);
      }
      if (!Number.isFinite(soonest)) {
        const seconds = Number.isFinite(reopens) ? Math.ceil((reopens - time) / 1_000) : 1;
        return {
          error: new AppError(
            'provider_unavailable',
            `Every deployment of route '${route.name}' is unavailable (circuit open).`,
            { details: { retryAfterSeconds: Math.max(1, seconds) } },
          ),
          kind: 'server_error',
        };
      }
      // A place that frees with less than an attempt's least time to go is of no use.
      const usableUntil = context.deadline - minimumAttemptMs;
      if (fallsOverWhenFull(route) || soonest > usableUntil) {
        return {
          error: new AppError(
            'provider_rate_limited',
            `Every deployment of route '${route.name}' is at its capacity or cooling down${soonest > usableUntil ? ', past what the call has left of its deadline' : ''}.`,
            { details: { retryAfterSeconds: Math.max(1, Math.ceil((soonest - time) / 1_000)) } },
          ),
          kind: 'rate_limited',
        };
      }
      // Woken by the end of a call on a full deployment, else when a cooldown (or an `rpm`
      // minute) ends, within a second, and never past the last moment an attempt is of use.
      const wait = Math.min(lookAgain, usableUntil) - time;
      await waitForPlace(full, { ms: Math.max(1, wait), signal: context.signal });
    }
  }

  return { available, awaitCandidates };
}
