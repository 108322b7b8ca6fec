import { Gauge, type Registry } from 'prom-client';

/** One breaker's state and its deployment (no tenant), as the model router reports it. */
export interface BreakerStateSample {
  readonly route: string;
  readonly deployment: number;
  readonly model: string;
  /** A platform route or a direct `<provider>:<model>` (false: one tenant's own route). */
  readonly shared: boolean;
  readonly state: 'closed' | 'open' | 'half-open' | 'isolated';
}

/** Where the state gauges read their values at scrape time. */
export interface StateSources {
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
 * queue's depth by state. `label` keeps free-form values bounded (route and model names).
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
