import { CircuitState } from 'cockatiel';
import { AppError } from '../domain/errors.ts';
import type { ModelResultV1 } from '../plugin-api/index.ts';
import { delay } from './abortable-delay.ts';
import { CallerFault, createDeploymentStates, type DeploymentState } from './deployment-state.ts';
import type {
  FailureKind,
  ModelRouteDefinition,
  RouteDeployment,
  RouteFallback,
} from './model-routes.ts';
import {
  classifyError,
  type ErrorClass,
  type RouteAttempt,
  type RoutedResult,
  RouteFailedError,
} from './route-failures.ts';

export { classifyError, type ErrorClass, type RouteAttempt, type RoutedResult, RouteFailedError };

/** Calls one deployment's model (the gateway's direct path). */
export type DeploymentCall = (
  model: string,
  signal: AbortSignal,
  onTextDelta: (delta: string) => void,
) => Promise<ModelResultV1>;

/** Options of {@link createModelRouter}. */
export interface ModelRouterOptions {
  /** For tests: the random source of weighted picks and jitter. */
  readonly random?: () => number;
  readonly now?: () => number;
}

/** Routes calls across deployments with retries, breakers, cooldowns and fallbacks. */
export interface ModelRouter {
  generate(
    route: ModelRouteDefinition,
    request: {
      readonly signal: AbortSignal;
      /** The caller's own deadline (a run's); the route's deadline applies too. */
      readonly deadline?: Date | undefined;
      readonly onTextDelta?: ((delta: string) => void) | undefined;
      /**
       * The caller's tenant (or `platform`): each has its own breakers, and its own routes of
       * a name another tenant uses too.
       */
      readonly scope: string;
      /**
       * Whether a route's deployments are shared by every tenant (a platform route, a direct
       * `<provider>:<model>`): then their caps and cooldowns count every tenant's calls.
       */
      readonly sharesCapacity: (route: ModelRouteDefinition) => boolean;
      /** Calls one deployment with this request. */
      readonly call: DeploymentCall;
      /** Finds a fallback route by name (the tenant's routes first, then the platform's). */
      readonly resolve: (name: string) => Promise<ModelRouteDefinition | undefined>;
    },
  ): Promise<RoutedResult>;
  /** Breaker state of every deployment this process has used, for metrics and tests. */
  breakerStates(): Record<string, 'closed' | 'open' | 'half-open' | 'isolated'>;
}

const maxFallbackDepth = 5;

/**
 * Creates the {@link ModelRouter}. Per attempt it picks a healthy deployment by the route's
 * strategy (breaker not open, not cooling down after a Retry-After, under its concurrency and
 * rpm), calls it with the attempt timeout, and on a retryable failure tries again: at once on
 * another healthy deployment, else after exponential backoff with full jitter (or the
 * Retry-After, if longer). A route that fails for good hands over to the first fallback whose
 * conditions name the failure. Nothing is retried once output reached the caller, and no call
 * outlives the deadline.
 */
export function createModelRouter(options: ModelRouterOptions): ModelRouter {
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;

  const { healthOf, capacityOf, healths } = createDeploymentStates(now);

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

  function pick(
    route: ModelRouteDefinition,
    candidates: readonly { deployment: RouteDeployment; state: DeploymentState }[],
  ) {
    if (candidates.length <= 1) return candidates[0];
    switch (route.strategy) {
      case 'least-busy':
        return candidates.reduce((best, next) =>
          next.state.capacity.inFlight < best.state.capacity.inFlight ? next : best,
        );
      case 'lowest-latency':
        // An unmeasured deployment counts as fastest, so every one gets measured.
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
   * The deployments of a route available now, after waiting, within the deadline and without
   * using up an attempt, for a cooldown (a provider's Retry-After) or a free place under
   * `maxConcurrency`/`rpm` to end. Deployments behind an open breaker are not waited for. A full
   * route with a fallback on `rate_limited` hands over to it at once instead of waiting.
   * Otherwise the failure, with how long until a deployment may take calls again.
   */
  async function awaitCandidates(
    route: ModelRouteDefinition,
    deployments: readonly { deployment: RouteDeployment; state: DeploymentState }[],
    context: { readonly deadline: number; readonly signal: AbortSignal },
  ): Promise<
    | { deployment: RouteDeployment; state: DeploymentState }[]
    | { error: AppError; kind: ErrorClass }
  > {
    const fallsOverWhenFull = route.fallbacks.some((fallback) =>
      fallback.on.includes('rate_limited'),
    );
    for (;;) {
      const candidates = deployments.filter(({ deployment, state }) =>
        available(deployment, state),
      );
      if (candidates.length > 0) return candidates;
      const time = now();
      let soonest = Number.POSITIVE_INFINITY;
      let reopens = Number.POSITIVE_INFINITY;
      for (const { deployment, state } of deployments) {
        const { breaker, openedAt, halfOpenAfterMs } = state.health;
        if (breaker.state === CircuitState.Open || breaker.state === CircuitState.HalfOpen) {
          reopens = Math.min(reopens, Math.max(openedAt + halfOpenAfterMs, time + 1_000));
          continue;
        }
        const { capacity } = state;
        let free = capacity.coolUntil;
        // Full: a place frees when a call ends (looked at again shortly) or a minute after the
        // oldest call start an `rpm` counts.
        if (
          deployment.maxConcurrency !== undefined &&
          capacity.inFlight >= deployment.maxConcurrency
        )
          free = Math.max(free, time + 25);
        if (deployment.rpm !== undefined && capacity.recent.length >= deployment.rpm)
          free = Math.max(free, (capacity.recent[0] ?? time) + 60_000);
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
      if (fallsOverWhenFull || soonest >= context.deadline) {
        return {
          error: new AppError(
            'provider_rate_limited',
            `Every deployment of route '${route.name}' is at its capacity or cooling down.`,
            { details: { retryAfterSeconds: Math.max(1, Math.ceil((soonest - time) / 1_000)) } },
          ),
          kind: 'rate_limited',
        };
      }
      await delay(Math.max(1, soonest - time), context.signal);
    }
  }

  /** Tries one route; returns the result, or the last failure to hand to a fallback. */
  async function tryRoute(
    route: ModelRouteDefinition,
    context: {
      readonly scope: string;
      readonly sharesCapacity: (route: ModelRouteDefinition) => boolean;
      readonly deadline: number;
      readonly signal: AbortSignal;
      readonly onTextDelta: ((delta: string) => void) | undefined;
      readonly attempts: RouteAttempt[];
      readonly call: DeploymentCall;
    },
  ): Promise<
    | { ok: true; result: ModelResultV1; model: string }
    | { ok: false; error: AppError; kind: ErrorClass }
  > {
    const deployments = route.deployments.map((deployment, index) => ({
      deployment,
      state: {
        health: healthOf(`${context.scope}:${route.name}:${index}:${deployment.model}`, route),
        capacity: capacityOf(
          `${context.sharesCapacity(route) ? '*' : context.scope}:${route.name}:${index}:${deployment.model}`,
        ),
      },
    }));
    // Built only when the route fails: an error (and its stack) per call is measurable CPU.
    let lastError: AppError | undefined;
    let lastKind: ErrorClass = 'server_error';
    let lastFailed: DeploymentState | undefined;
    for (let attempt = 0; attempt < route.retries.maxAttempts; attempt += 1) {
      const waited = await awaitCandidates(route, deployments, context);
      if (!Array.isArray(waited)) {
        lastError = waited.error;
        lastKind = waited.kind;
        break;
      }
      const candidates = waited;
      // Prefer a deployment other than the one that just failed.
      const others = candidates.filter(({ state }) => state !== lastFailed);
      const chosen = pick(route, others.length > 0 ? others : candidates);
      if (chosen === undefined) break;
      const { deployment, state } = chosen;
      const remaining = context.deadline - now();
      if (remaining <= 0) break;
      const attemptTimeout = AbortSignal.timeout(Math.min(route.attemptTimeoutMs, remaining));
      const signal = AbortSignal.any([context.signal, attemptTimeout]);
      let streamed = false;
      const started = now();
      state.capacity.inFlight += 1;
      state.health.inFlight += 1;
      // Starts are kept for an `rpm` only: a capacity without one is idle once its calls end.
      if (deployment.rpm !== undefined) state.capacity.recent.push(started);
      try {
        const result = await state.health.breaker.execute(async () => {
          try {
            return await context.call(deployment.model, signal, (delta) => {
              streamed = true;
              context.onTextDelta?.(delta);
            });
          } catch (error) {
            // Not the deployment's fault, so not the breaker's business: the caller went away,
            // or the call's own deadline (shorter than an attempt) ran out. Otherwise one
            // tenant disconnecting on purpose could open a breaker every tenant shares.
            if (
              context.signal.aborted ||
              (attemptTimeout.aborted && remaining < route.attemptTimeoutMs)
            )
              throw new CallerFault(error);
            throw error;
          }
        }, signal);
        const latency = now() - started;
        const { capacity } = state;
        capacity.latencyMs =
          capacity.latencyMs === undefined ? latency : 0.8 * capacity.latencyMs + 0.2 * latency;
        context.attempts.push({
          route: route.name,
          model: deployment.model,
          status: 'ok',
          latencyMs: latency,
          streamed,
        });
        return { ok: true, result, model: deployment.model };
      } catch (thrown) {
        context.signal.throwIfAborted();
        const error = thrown instanceof CallerFault ? thrown.inner : thrown;
        const classified = attemptTimeout.aborted
          ? { kind: 'timeout' as const }
          : classifyError(error);
        context.attempts.push({
          route: route.name,
          model: deployment.model,
          status: 'error',
          errorClass: classified.kind,
          latencyMs: now() - started,
          streamed,
        });
        lastError =
          classified.kind === 'timeout'
            ? new AppError(
                'provider_unavailable',
                `The model did not answer within ${Math.min(route.attemptTimeoutMs, remaining)} ms.`,
              )
            : error instanceof AppError
              ? error
              : new AppError('provider_unavailable', 'The model provider could not be reached.');
        lastKind = classified.kind;
        lastFailed = state;
        // Output already reached the caller: a retry would repeat it. Fail cleanly instead.
        if (streamed || classified.kind === 'client_error' || classified.kind === 'aborted')
          return { ok: false, error: lastError, kind: 'client_error' };
        if (classified.kind === 'context_length' || classified.kind === 'content_filter')
          return { ok: false, error: lastError, kind: classified.kind };
        if (classified.retryAfterMs !== undefined)
          state.capacity.coolUntil = now() + classified.retryAfterMs;
        const otherHealthy = deployments.some(
          (other) => other.state !== state && available(other.deployment, other.state),
        );
        if (!otherHealthy && attempt + 1 < route.retries.maxAttempts) {
          const ceiling = Math.min(
            route.retries.maxDelayMs,
            route.retries.baseDelayMs * 2 ** attempt,
          );
          const backoff = Math.max(random() * ceiling, classified.retryAfterMs ?? 0);
          if (now() + backoff >= context.deadline) break;
          await delay(backoff, context.signal);
        }
      } finally {
        state.capacity.inFlight -= 1;
        state.health.inFlight -= 1;
      }
    }
    return {
      ok: false,
      error:
        lastError ??
        new AppError(
          'provider_unavailable',
          `Every deployment of route '${route.name}' is unavailable.`,
        ),
      kind: lastKind,
    };
  }

  return {
    async generate(first, request) {
      const attempts: RouteAttempt[] = [];
      const deadline = Math.min(
        now() + first.deadlineMs,
        request.deadline?.getTime() ?? Number.POSITIVE_INFINITY,
      );
      const visited = new Set<string>();
      let route: ModelRouteDefinition | undefined = first;
      let failure: { error: AppError; kind: ErrorClass } | undefined;
      for (let depth = 0; route !== undefined && depth <= maxFallbackDepth; depth += 1) {
        visited.add(route.name);
        const outcome = await tryRoute(route, {
          scope: request.scope,
          sharesCapacity: request.sharesCapacity,
          deadline,
          signal: request.signal,
          onTextDelta: request.onTextDelta,
          attempts,
          call: request.call,
        });
        if (outcome.ok) {
          return { result: outcome.result, route: route.name, model: outcome.model, attempts };
        }
        failure = outcome;
        if (outcome.kind === 'client_error' || now() >= deadline) break;
        const next: RouteFallback | undefined = route.fallbacks.find(
          (fallback) =>
            !visited.has(fallback.route) && fallback.on.includes(outcome.kind as FailureKind),
        );
        route = next === undefined ? undefined : await request.resolve(next.route);
      }
      const error =
        failure?.error ?? new AppError('provider_unavailable', 'No deployment answered.');
      // Every deployment down or the deadline passed: tell the client when to come back.
      // (A route whose deployments are all behind open breakers says when they may reopen;
      // any other failure, a provider's 5xx or a timeout, is worth a retry in a second.)
      const retryAfterSeconds =
        error.details?.['retryAfterSeconds'] ??
        (error.code === 'provider_unavailable' || error.code === 'provider_rate_limited'
          ? 1
          : undefined);
      throw new RouteFailedError(
        retryAfterSeconds === undefined || error.details?.['retryAfterSeconds'] !== undefined
          ? error
          : new AppError(error.code, error.message, {
              details: { ...(error.details ?? {}), retryAfterSeconds },
            }),
        attempts,
      );
    },
    breakerStates() {
      const names = ['closed', 'open', 'half-open', 'isolated'] as const;
      return Object.fromEntries(
        [...healths.entries()].map(([key, health]) => [
          key,
          names[health.breaker.state] ?? 'closed',
        ]),
      );
    },
  };
}
