import { AppError } from '../domain/errors.ts';
import type { ModelResultV1 } from '../plugin-api/index.ts';
import { delay } from './abortable-delay.ts';
import { minimumAttemptMs, startAttemptTimer } from './attempt-timer.ts';
import {
  type Candidate,
  createAvailability,
  fallsOverWhenFull,
  pickDeployment,
  releasePlace,
} from './deployment-availability.ts';
import {
  type BreakerSubject,
  CallerFault,
  createDeploymentStates,
  type DeploymentState,
} from './deployment-state.ts';
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
  timeoutError,
} from './route-failures.ts';

export { classifyError, type ErrorClass, type RouteAttempt, type RoutedResult, RouteFailedError };

/** Where a deployment call's streamed output goes (see {@link DeploymentCall}). */
export interface AttemptOutput {
  /** A text delta for the caller: output reached it, so the attempt is not retried. */
  readonly onTextDelta: (delta: string) => void;
  /**
   * Any streamed output arrived (text, a tool call's fragment, reasoning): the attempt is
   * alive, and its timeout bounds the gap to the next output rather than the whole answer.
   */
  readonly onProgress: () => void;
}

/** Calls one deployment's model (the gateway's direct path). */
export type DeploymentCall = (
  deployment: RouteDeployment,
  signal: AbortSignal,
  output: AttemptOutput,
) => Promise<ModelResultV1>;

/** Options of {@link createModelRouter}. */
/** One breaker's state and the deployment it guards (see {@link ModelRouter.breakerStates}). */
export type BreakerSample = BreakerSubject & {
  readonly state: 'closed' | 'open' | 'half-open' | 'isolated';
};

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
      /** Told the deployment's model as each attempt calls it (see `GatewayRequest`). */
      readonly onAttempt?: ((model: string) => void) | undefined;
      /** Finds a fallback route by name (the tenant's routes first, then the platform's). */
      readonly resolve: (name: string) => Promise<ModelRouteDefinition | undefined>;
      /**
       * Whether a deployment's context can hold the prompt (see context-fit.ts): those that
       * cannot are skipped. Absent: every deployment is tried.
       */
      readonly fits?: ((deployment: RouteDeployment) => boolean) | undefined;
    },
  ): Promise<RoutedResult>;
  /**
   * The state of every breaker this process holds (one per tenant and deployment used lately),
   * with its deployment but not its tenant: for metrics.
   */
  breakerStates(): readonly BreakerSample[];
}

const maxFallbackDepth = 5;

/**
 * Creates the {@link ModelRouter}. Per attempt it picks a healthy deployment by the route's
 * strategy (breaker not open, not cooling down after a Retry-After, under its concurrency and
 * rpm), calls it with the attempt timeout, and on a retryable failure tries again: at once on
 * another healthy deployment, else after exponential backoff with full jitter (or the
 * Retry-After, if longer). A route that fails for good hands over to the first fallback whose
 * conditions name the failure; one whose deployments are all cooling down after a Retry-After
 * (or full) hands over to a fallback on `rate_limited` at once, without waiting the cooldown
 * out. Nothing is retried once output reached the caller, and no call outlives the deadline.
 */
export function createModelRouter(options: ModelRouterOptions): ModelRouter {
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;

  const { healthOf, capacityOf, healths } = createDeploymentStates(now);
  const { available, awaitCandidates } = createAvailability(now);

  /** Tries one route; returns the result, or the last failure to hand to a fallback. */
  async function tryRoute(
    route: ModelRouteDefinition,
    context: {
      readonly scope: string;
      readonly sharesCapacity: (route: ModelRouteDefinition) => boolean;
      readonly deadline: number;
      /** The call's deadline in ms from its start (for messages). */
      readonly deadlineMs: number;
      readonly signal: AbortSignal;
      readonly onTextDelta: ((delta: string) => void) | undefined;
      readonly attempts: RouteAttempt[];
      readonly call: DeploymentCall;
      readonly onAttempt: ((model: string) => void) | undefined;
      readonly fits?: ((deployment: RouteDeployment) => boolean) | undefined;
    },
  ): Promise<
    | { ok: true; result: ModelResultV1; model: string }
    | { ok: false; error: AppError; kind: ErrorClass; coolingDown?: boolean }
  > {
    // Deployments whose known context window cannot hold the prompt are not called: a route
    // with none left fails as `context_length` (its fallbacks on that condition apply).
    const deployments: Candidate[] = [];
    route.deployments.forEach((deployment, index) => {
      if (context.fits !== undefined && !context.fits(deployment)) return;
      deployments.push({
        deployment,
        state: {
          health: healthOf(`${context.scope}:${route.name}:${index}:${deployment.model}`, route, {
            route: route.name,
            deployment: index,
            model: deployment.model,
            shared: context.sharesCapacity(route),
          }),
          capacity: capacityOf(
            `${context.sharesCapacity(route) ? '*' : context.scope}:${route.name}:${index}:${deployment.model}`,
          ),
        },
      });
    });
    if (deployments.length === 0)
      return {
        ok: false,
        error: new AppError(
          'context_length_exceeded',
          `The prompt is longer than the context of every model of route '${route.name}'.`,
        ),
        kind: 'context_length',
      };
    const timing = { attemptTimeoutMs: route.attemptTimeoutMs, deadlineMs: context.deadlineMs };
    // Built only when the route fails: an error (and its stack) per call is measurable CPU.
    let lastError: AppError | undefined;
    let lastKind: ErrorClass = 'server_error';
    let lastFailed: DeploymentState | undefined;
    for (let attempt = 0; attempt < route.retries.maxAttempts; attempt += 1) {
      // Waiting (an async step) only when nothing is available now: the common call takes none.
      const ready = deployments.filter(({ deployment, state }) => available(deployment, state));
      const waited = ready.length > 0 ? ready : await awaitCandidates(route, deployments, context);
      if (!Array.isArray(waited)) {
        lastError = waited.error;
        lastKind = waited.kind;
        break;
      }
      const candidates = waited;
      // Prefer a deployment other than the one that just failed.
      const others = candidates.filter(({ state }) => state !== lastFailed);
      const chosen = pickDeployment(route, others.length > 0 ? others : candidates, random);
      if (chosen === undefined) break;
      const { deployment, state } = chosen;
      const remaining = context.deadline - now();
      if (remaining < minimumAttemptMs) {
        // Too little left to be of use: the route fails with its last failure, or (none yet)
        // as its deadline passed.
        if (lastError === undefined) {
          lastError = timeoutError({ ...timing, cutoff: 'too-late', streamed: false });
          lastKind = 'timeout';
        }
        break;
      }
      // The attempt timeout bounds the time to the first output, then (a streaming attempt)
      // the gaps between outputs; the call's deadline bounds it in all.
      const timer = startAttemptTimer({
        timeoutMs: route.attemptTimeoutMs,
        deadlineInMs: remaining,
        now,
      });
      const signal = AbortSignal.any([context.signal, timer.signal]);
      let streamed = false;
      const output: AttemptOutput = {
        onTextDelta: (delta) => {
          streamed = true;
          timer.progress();
          context.onTextDelta?.(delta);
        },
        onProgress: timer.progress,
      };
      const started = now();
      state.capacity.inFlight += 1;
      state.health.inFlight += 1;
      // Starts are kept for an `rpm` only: a capacity without one is idle once its calls end.
      if (deployment.rpm !== undefined) state.capacity.recent.push(started);
      try {
        const result = await state.health.breaker.execute(async () => {
          try {
            context.onAttempt?.(deployment.model);
            return await context.call(deployment, signal, output);
          } catch (error) {
            // Not the deployment's fault, so not the breaker's business: the caller went away,
            // or the call's own deadline ran out. Otherwise one tenant disconnecting on
            // purpose could open a breaker every tenant shares.
            if (context.signal.aborted || timer.cutoff() === 'deadline')
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
        const cutoff = timer.cutoff();
        const classified =
          cutoff === undefined ? classifyError(error) : { kind: 'timeout' as const };
        context.attempts.push({
          route: route.name,
          model: deployment.model,
          status: 'error',
          errorClass: classified.kind,
          latencyMs: now() - started,
          streamed,
        });
        lastError =
          cutoff !== undefined
            ? timeoutError({ ...timing, cutoff, streamed })
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
          // Every deployment is cooling down, full or behind an open breaker: a route with a
          // fallback on `rate_limited` hands over now rather than sleep out a Retry-After.
          if (state.capacity.coolUntil > now() && fallsOverWhenFull(route)) break;
          const ceiling = Math.min(
            route.retries.maxDelayMs,
            route.retries.baseDelayMs * 2 ** attempt,
          );
          const backoff = Math.max(random() * ceiling, classified.retryAfterMs ?? 0);
          // An attempt after the wait would have too little time: fail with this failure.
          if (now() + backoff > context.deadline - minimumAttemptMs) break;
          await delay(backoff, context.signal);
        }
      } finally {
        timer.stop();
        releasePlace(state.capacity);
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
      // A deployment that named a Retry-After is cooling down and none other is free: the
      // route is as good as rate limited, whatever the failure's own kind (a 503 may cool too).
      coolingDown:
        lastFailed !== undefined &&
        lastFailed.capacity.coolUntil > now() &&
        !deployments.some(({ deployment, state }) => available(deployment, state)),
    };
  }

  return {
    async generate(first, request) {
      const attempts: RouteAttempt[] = [];
      const started = now();
      const deadline = Math.min(
        started + first.deadlineMs,
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
          deadlineMs: deadline - started,
          signal: request.signal,
          onTextDelta: request.onTextDelta,
          attempts,
          call: request.call,
          onAttempt: request.onAttempt,
          fits: request.fits,
        });
        if (outcome.ok) {
          return { result: outcome.result, route: route.name, model: outcome.model, attempts };
        }
        failure = outcome;
        // A fallback is not started with too little of the deadline left to be of use.
        if (outcome.kind === 'client_error' || deadline - now() < minimumAttemptMs) break;
        const next: RouteFallback | undefined = route.fallbacks.find(
          (fallback) =>
            !visited.has(fallback.route) &&
            (fallback.on.includes(outcome.kind as FailureKind) ||
              (outcome.coolingDown === true && fallback.on.includes('rate_limited'))),
        );
        route = next === undefined ? undefined : await request.resolve(next.route);
      }
      const error =
        failure?.error ?? new AppError('provider_unavailable', 'No deployment answered.');
      // Every deployment down or the deadline passed: tell the client when to come back.
      // (A route whose deployments are all behind open breakers says when they may reopen, a
      // provider that named a Retry-After its time; any other failure, a provider's 5xx or a
      // timeout, is worth a retry in a second.)
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
      return [...healths.values()].flatMap((health) =>
        health.subject === undefined
          ? []
          : [{ ...health.subject, state: names[health.breaker.state] ?? 'closed' }],
      );
    },
  };
}
