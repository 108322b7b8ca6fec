import {
  type CircuitBreakerPolicy,
  CircuitState,
  circuitBreaker,
  handleWhen,
  SamplingBreaker,
} from 'cockatiel';
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
  /** Callers waiting for a place under `maxConcurrency` (each woken by a call's end). */
  readonly waiting: Set<() => void>;
}

/**
 * One tenant's breaker for a deployment: a tenant whose requests make a provider fail (on
 * purpose or not) opens its own breaker, never the other tenants'.
 */
export interface Health {
  readonly breaker: CircuitBreakerPolicy;
  /** Which deployment the breaker guards, as metrics name it (no tenant). */
  readonly subject: BreakerSubject | undefined;
  /** This tenant's calls in flight: a half-open breaker lets one probe through. */
  inFlight: number;
  /** When the breaker last opened; after `halfOpenAfterMs` one probe may go through. */
  openedAt: number;
  readonly halfOpenAfterMs: number;
}

/**
 * A breaker's deployment without its tenant: the route's name, the deployment's place in it
 * and its model, and whether the route is shared by every tenant (a platform route or a
 * direct `<provider>:<model>`) or is one tenant's own.
 */
export interface BreakerSubject {
  readonly route: string;
  readonly deployment: number;
  readonly model: string;
  readonly shared: boolean;
}

export interface DeploymentState {
  readonly capacity: Capacity;
  readonly health: Health;
}

/** Entries of each map (a tenant's breakers, a sharing scope's capacity) kept at most. */
const maxEntries = 10_000;

/**
 * The router's per-deployment state in this process: a {@link Health} per tenant and route
 * deployment, a {@link Capacity} per sharing scope; both maps bounded, least recently used
 * first. Keys come from requests (any member's `<provider>:<anything>` is a deployment of its
 * own), so a full map must not drop state that is in use: an evicted capacity forgot its calls
 * in flight and its last minute's starts (a platform route's `maxConcurrency` and `rpm`, which
 * protect the operator's provider account, counted from zero again), an evicted breaker forgot
 * that it was open. The entry dropped is the least recently used idle one; none is dropped
 * while every entry is in use.
 */
export function createDeploymentStates(now: () => number) {
  const healths = new Map<string, Health>();
  const capacities = new Map<string, Capacity>();

  function recall<T>(map: Map<string, T>, key: string): T | undefined {
    const known = map.get(key);
    if (known === undefined) return undefined;
    map.delete(key);
    map.set(key, known);
    return known;
  }

  function remember<T>(
    map: Map<string, T>,
    entry: { readonly key: string; readonly value: T },
    idle: (value: T) => boolean,
  ): T {
    map.set(entry.key, entry.value);
    if (map.size <= maxEntries) return entry.value;
    // The least recently used idle entry goes. Entries in use are skipped however many there
    // are: they are calls in flight (or breakers open, capacities cooling down), so the scan is
    // as long as this process's concurrency at most, and the map outgrows maxEntries only by
    // entries in use.
    for (const [key, value] of map) {
      if (map.size <= maxEntries) break;
      if (key !== entry.key && idle(value)) map.delete(key);
    }
    return entry.value;
  }

  const idleHealth = (health: Health) =>
    health.inFlight === 0 && health.breaker.state === CircuitState.Closed;
  const idleCapacity = (capacity: Capacity) =>
    capacity.inFlight === 0 &&
    capacity.waiting.size === 0 &&
    capacity.coolUntil <= now() &&
    (capacity.recent.at(-1) ?? Number.NEGATIVE_INFINITY) <= now() - 60_000;

  function healthOf(key: string, route: ModelRouteDefinition, subject?: BreakerSubject): Health {
    const known = recall(healths, key);
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
          // cockatiel takes a rate below 1 (it opens above it); a route may say 1: open only
          // when every call of the window failed.
          threshold: Math.min(route.breaker.failureRate, 1 - 1e-9),
          duration: route.breaker.windowMs,
          minimumRps: route.breaker.minimumRps,
        }),
      },
    );
    const created: Health = {
      breaker,
      subject,
      inFlight: 0,
      openedAt: 0,
      halfOpenAfterMs: route.breaker.halfOpenAfterMs,
    };
    breaker.onBreak(() => {
      created.openedAt = now();
    });
    return remember(healths, { key, value: created }, idleHealth);
  }

  function capacityOf(key: string): Capacity {
    return (
      recall(capacities, key) ??
      remember(
        capacities,
        {
          key,
          value: {
            inFlight: 0,
            latencyMs: undefined,
            coolUntil: 0,
            recent: [],
            waiting: new Set(),
          },
        },
        idleCapacity,
      )
    );
  }
  return { healthOf, capacityOf, healths };
}
