import { type CircuitBreakerPolicy, circuitBreaker, handleWhen, SamplingBreaker } from 'cockatiel';
import type { ModelRouteDefinition } from './model-routes.ts';
import { classifyError } from './route-failures.ts';

/** Wraps a failure that is the caller's doing, so the breaker does not count it. */
export class CallerFault extends Error {
  readonly inner: unknown;
  constructor(inner: unknown) {
    super('the caller ended the call');
    this.inner = inner;
  }
}

/**
 * What every caller of one deployment of a route shares in this process: the route's caps
 * (`maxConcurrency`, `rpm`), a provider's Retry-After cooldown and the latency average. For a
 * platform route or a direct `<provider>:<model>` they protect the operator's provider account,
 * so every tenant counts against them together.
 */
export interface Capacity {
  inFlight: number;
  /** Moving average of successful call latency (ms); undefined until the first success. */
  latencyMs: number | undefined;
  /** Not used before this time (a Retry-After it sent). */
  coolUntil: number;
  /** Start times of calls in the last minute (for `rpm`). */
  readonly recent: number[];
}

/**
 * One tenant's breaker for a deployment: a tenant whose requests make a provider fail (on
 * purpose or not) opens its own breaker, never the other tenants'.
 */
export interface Health {
  readonly breaker: CircuitBreakerPolicy;
  /** This tenant's calls in flight: a half-open breaker lets one probe through. */
  inFlight: number;
  /** When the breaker last opened; after `halfOpenAfterMs` one probe may go through. */
  openedAt: number;
  readonly halfOpenAfterMs: number;
}

export interface DeploymentState {
  readonly capacity: Capacity;
  readonly health: Health;
}

/**
 * The router's per-deployment state in this process: a {@link Health} per tenant and route
 * deployment, a {@link Capacity} per sharing scope; both maps bounded.
 */
export function createDeploymentStates(now: () => number) {
  const healths = new Map<string, Health>();
  const capacities = new Map<string, Capacity>();

  /** Keeps a map of per-deployment state bounded (the oldest entry goes). */
  function remember<T>(map: Map<string, T>, key: string, value: T): T {
    map.set(key, value);
    if (map.size > 10_000) {
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
    return value;
  }

  function healthOf(key: string, route: ModelRouteDefinition): Health {
    const known = healths.get(key);
    if (known !== undefined) return known;
    const breaker = circuitBreaker(
      handleWhen((error) => {
        if (error instanceof CallerFault) return false;
        const kind = classifyError(error).kind;
        return kind === 'server_error' || kind === 'timeout';
      }),
      {
        halfOpenAfter: route.breaker.halfOpenAfterMs,
        breaker: new SamplingBreaker({
          threshold: route.breaker.failureRate,
          duration: route.breaker.windowMs,
          minimumRps: route.breaker.minimumRps,
        }),
      },
    );
    const created: Health = {
      breaker,
      inFlight: 0,
      openedAt: 0,
      halfOpenAfterMs: route.breaker.halfOpenAfterMs,
    };
    breaker.onBreak(() => {
      created.openedAt = now();
    });
    return remember(healths, key, created);
  }

  function capacityOf(key: string): Capacity {
    return (
      capacities.get(key) ??
      remember(capacities, key, { inFlight: 0, latencyMs: undefined, coolUntil: 0, recent: [] })
    );
  }
  return { healthOf, capacityOf, healths };
}
