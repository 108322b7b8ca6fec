import type { ModelPrice } from './pricing.ts';

/** Why a model call failed, as routing sees it: decides retries, breakers and fallbacks. */
export const failureKinds = [
  'rate_limited',
  'server_error',
  'timeout',
  'context_length',
  'content_filter',
] as const;

/** A failure kind a fallback can be conditioned on. */
export type FailureKind = (typeof failureKinds)[number];

/** How a route picks among its healthy deployments. */
export const routeStrategies = ['weighted', 'least-busy', 'lowest-latency'] as const;

/** A routing strategy. */
export type RouteStrategy = (typeof routeStrategies)[number];

/** One place a route can send a call: a model of a provider (or `local`). */
export interface RouteDeployment {
  /** `local` or `<provider>:<model id>`. */
  readonly model: string;
  /** Share of traffic under the `weighted` strategy (default 1). */
  readonly weight?: number | undefined;
  /** Calls in flight at once on this deployment, per process (default unlimited). */
  readonly maxConcurrency?: number | undefined;
  /** Requests per minute this deployment accepts, per process (default unlimited). */
  readonly rpm?: number | undefined;
  /** Price override for this deployment. */
  readonly price?: ModelPrice | undefined;
  /** Context window in tokens (overrides the built-in table). */
  readonly contextTokens?: number | undefined;
}

/** A fallback: another route tried when this one fails for one of `on`. */
export interface RouteFallback {
  readonly route: string;
  readonly on: readonly FailureKind[];
}

/**
 * The response cache of a route (opt-in). Answers are cached per user; `scope: 'tenant'` shares
 * them between the tenant's users. Routes are made by admins (tenant routes) or the operator
 * (config file), so declaring the shared scope on a route is an admin's act.
 */
export interface RouteCache {
  /** How long an answer is served from the cache, in seconds. */
  readonly ttlSeconds: number;
  /** `user` (default): one user's answers are never served to another; `tenant`: shared. */
  readonly scope?: 'user' | 'tenant' | undefined;
}

/** A model route: a name callers use instead of a model, with its resilience settings. */
export interface ModelRouteDefinition {
  readonly name: string;
  readonly strategy: RouteStrategy;
  readonly deployments: readonly RouteDeployment[];
  readonly fallbacks: readonly RouteFallback[];
  /** Longest a single attempt may take. */
  readonly attemptTimeoutMs: number;
  /** Longest the whole call may take, retries and fallbacks included. */
  readonly deadlineMs: number;
  readonly retries: {
    /** Attempts on this route before its fallbacks (1 = no retry). */
    readonly maxAttempts: number;
    readonly baseDelayMs: number;
    readonly maxDelayMs: number;
  };
  readonly breaker: {
    /** Failure share in the window that opens a deployment's breaker (0–1). */
    readonly failureRate: number;
    readonly windowMs: number;
    /** Calls per second needed in the window before the breaker may open. */
    readonly minimumRps: number;
    /** How long an open breaker waits before one probe (half-open). */
    readonly halfOpenAfterMs: number;
  };
  /** Response cache for OpenAI-compatible API calls (off when absent). */
  readonly cache?: RouteCache | undefined;
}

/** Defaults of the optional route settings. */
export const routeDefaults = {
  strategy: 'weighted',
  fallbacks: [],
  attemptTimeoutMs: 30_000,
  deadlineMs: 120_000,
  retries: { maxAttempts: 3, baseDelayMs: 200, maxDelayMs: 5_000 },
  breaker: { failureRate: 0.5, windowMs: 30_000, minimumRps: 1, halfOpenAfterMs: 10_000 },
} as const;

/** Route names: lower-case, no `:` (which marks `<provider>:<model>`). */
export const routeNamePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** True when `model` can only be a route name (not `local`, not `<provider>:<model>`). */
export function isRouteName(model: string): boolean {
  return model !== 'local' && routeNamePattern.test(model);
}
