import { Counter, Gauge, type Registry } from 'prom-client';

/** One breaker's state and its deployment (no tenant), as the model router reports it. */
export interface BreakerStateSample {
  readonly route: string;
  readonly deployment: number;
  readonly model: string;
  /** A platform route or a direct `<provider>:<model>` (false: one tenant's own route). */
  readonly shared: boolean;
  readonly state: 'closed' | 'open' | 'half-open' | 'isolated';
}

/** The rate limits that fall back to per-process counters while Redis fails. */
export type FallbackLimiter = 'requests' | 'tokens' | 'model_calls';

/** The shared rate-limit store (Redis) as this process sees it. */
export interface RateLimitStoreState {
  /** True while rate limits are counted per process because Redis is unreachable. */
  readonly degraded: boolean;
  /** Requests and model calls counted per process instead, by limiter, since the start. */
  readonly fallbacks: Readonly<Record<FallbackLimiter, number>>;
}

/** Where the state gauges read their values at scrape time. */
export interface StateSources {
  /** The rate-limit store's state (src/runtime/rate-limit-store-health.ts). */
  readonly rateLimitStore?: (() => RateLimitStoreState) | undefined;
  /** Every breaker of this process (the model router's). */
  readonly breakers?: (() => readonly BreakerStateSample[]) | undefined;
  /** Runs in the deployment's queue by state (one small count; cached, see below). */
  readonly queueDepth?: (() => Promise<Readonly<Record<string, number>>>) | undefined;
}

const breakerStates = ['closed', 'open', 'half-open', 'isolated'] as const;
/** The queue is counted at most this often, however many scrapers ask. */
const queueDepthTtlMs = 5_000;
/** A scrape does not wait longer than this for the count (the gauge is left out then). */
const queueDepthTimeoutMs = 2_000;

/**
 * Registers the gauges computed at scrape time: breakers by deployment and state, and the run
 * queue's depth by state. `label` turns route and model names into labels (configured names
 * only: see gateway/model-names.ts).
 */
export function registerStateGauges(options: {
  readonly registry: Registry;
  readonly sources: StateSources;
  readonly label: (value: string) => string;
}): void {
  const { registry, sources, label } = options;
  const breakerSource = sources.breakers;
  if (breakerSource !== undefined)
    new Gauge({
      name: 'brigade_model_breakers',
      help: 'Circuit breakers of this process by deployment and state (one per tenant using the deployment; tenants\' own routes are route="tenant").',
      labelNames: ['route', 'deployment', 'model', 'state'] as const,
      registers: [registry],
      collect() {
        this.reset();
        const counts = new Map<string, { labels: Record<string, string>; count: number }[]>();
        for (const sample of breakerSource()) {
          const base = {
            route: sample.shared ? label(sample.route) : 'tenant',
            deployment: String(sample.deployment),
            model: label(sample.model),
          };
          const key = JSON.stringify(base);
          const states =
            counts.get(key) ??
            breakerStates.map((state) => ({ labels: { ...base, state }, count: 0 }));
          counts.set(key, states);
          const entry = states.find((candidate) => candidate.labels['state'] === sample.state);
          if (entry !== undefined) entry.count += 1;
        }
        for (const states of counts.values())
          for (const { labels, count } of states) this.set(labels, count);
      },
    });
  const storeSource = sources.rateLimitStore;
  if (storeSource !== undefined) registerStoreGauges(registry, storeSource);
  const depthSource = sources.queueDepth;
  if (depthSource !== undefined) {
    let cached: { at: number; depth: Promise<Readonly<Record<string, number>> | undefined> } = {
      at: Number.NEGATIVE_INFINITY,
      depth: Promise.resolve(undefined),
    };
    new Gauge({
      name: 'brigade_run_queue_depth',
      help: 'Runs in the queue of the whole deployment by state (queued: waiting for a slot; claimed: executing; parked: waiting for an approval). Every process reports the same count.',
      labelNames: ['state'] as const,
      registers: [registry],
      async collect() {
        if (Date.now() - cached.at >= queueDepthTtlMs) {
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<undefined>((resolve) => {
            timer = setTimeout(() => resolve(undefined), queueDepthTimeoutMs);
          });
          const counted = depthSource().catch(() => undefined);
          cached = {
            at: Date.now(),
            depth: Promise.race([counted, timeout]).finally(() => clearTimeout(timer)),
          };
        }
        const depth = await cached.depth;
        this.reset();
        if (depth === undefined) return;
        for (const [state, count] of Object.entries(depth)) this.set({ state }, count);
      },
    });
  }
}

/** The rate-limit store's gauge and its fallback counter, both read from `source` at scrape time. */
function registerStoreGauges(registry: Registry, source: () => RateLimitStoreState): void {
  new Gauge({
    name: 'brigade_rate_limit_store_degraded',
    help: 'Whether this process counts rate limits (requests, tokens, model calls per minute or at once) on its own because Redis is unreachable (1) or in Redis (0; also 0 without Redis).',
    registers: [registry],
    collect() {
      this.set(source().degraded ? 1 : 0);
    },
  });
  new Counter({
    name: 'brigade_rate_limit_store_fallbacks_total',
    help: 'Rate-limit counts this process made in its own counters because Redis failed (one per limit a request or model call was counted against), by limiter: requests, tokens, model_calls.',
    labelNames: ['limiter'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [limiter, count] of Object.entries(source().fallbacks))
        this.inc({ limiter }, count);
    },
  });
}
