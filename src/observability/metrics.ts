import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import { registerStateGauges, type StateSources } from './state-gauges.ts';

/** One model call as the gateway saw it; identifying users or tenants is deliberately absent. */
export interface ModelCallSample {
  readonly provider: string;
  readonly model: string;
  /** `ok`, `error`, `cancelled`… (a short, closed set: it becomes a label). */
  readonly status: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly costUsd: number;
  readonly latencyMs: number;
}

/** How one HTTP request ended. */
export interface HttpSample {
  readonly method: string;
  /** The matched route template (`/v1/threads/:threadId`), never the concrete path. */
  readonly route: string;
  readonly status: number;
  readonly durationSeconds: number;
}

/**
 * How model and provider names become labels: only names the operator configured are kept
 * (gateway/model-names.ts); callers choose model names, so anything else is `<provider>:other`
 * or `other`.
 */
export interface ModelLabels {
  modelLabel(model: string): string;
  providerLabel(provider: string): string;
}

/**
 * Brigade's Prometheus metrics, on a registry of their own (no global state). Labels have
 * bounded cardinality: methods, route templates, status classes, outcomes, limiter scopes,
 * and the providers and model names of the configuration — never a tenant, user, key or run
 * id, nor any other string a caller chose.
 */
export interface Metrics {
  readonly contentType: string;
  observeHttpRequest(sample: HttpSample): void;
  /** A run reached a terminal state. */
  recordRunOutcome(outcome: 'completed' | 'failed' | 'cancelled' | 'expired'): void;
  /** Time a run waited in the queue before its first claim, in seconds. */
  observeQueueWait(seconds: number): void;
  /** One model call (call it where usage records are written). */
  recordModelCall(sample: ModelCallSample): void;
  /** A request or call refused by a rate limiter, by the scope that refused it. */
  recordRateLimitRejection(scope: string): void;
  /** The text exposition format. */
  render(): Promise<string>;
}

const knownMethods = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);
const labelPattern = /^[\w.:/@-]{1,100}$/;

/** Keeps a free-form label value bounded: anything odd becomes `other`. */
function bounded(value: string): string {
  return labelPattern.test(value) ? value : 'other';
}

/**
 * Caps how many distinct values one label takes (statuses and limiter scopes, which the code
 * chooses); values past the cap are reported as `other`.
 */
function capped(max: number): (value: string) => string {
  const seen = new Set<string>();
  return (value) => {
    const label = bounded(value);
    if (seen.has(label)) return label;
    if (seen.size >= max) return 'other';
    seen.add(label);
    return label;
  };
}

/**
 * Creates the metrics; `defaultMetrics` adds prom-client's process metrics (CPU, memory, GC,
 * event loop); `sources` feed the gauges read at scrape time (breakers, queue depth); `labels`
 * decides which model and provider names are labels (none without it: all are `other`).
 */
export function createMetrics(
  options: {
    readonly defaultMetrics?: boolean;
    readonly sources?: StateSources;
    readonly labels?: ModelLabels;
  } = {},
): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const labels = options.labels ?? { modelLabel: () => 'other', providerLabel: () => 'other' };
  // Configured names only, so bounded by the configuration (no first-come cap to exhaust).
  const modelLabel = (model: string) => bounded(labels.modelLabel(model));
  const providerLabel = (provider: string) => bounded(labels.providerLabel(provider));
  registerStateGauges({ registry, sources: options.sources ?? {}, label: modelLabel });
  const httpRequests = new Counter({
    name: 'brigade_http_requests_total',
    help: 'HTTP requests by method, route template and status class.',
    labelNames: ['method', 'route', 'status_class'] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: 'brigade_http_request_duration_seconds',
    help: 'Time to the response headers, by method and route template.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const runs = new Counter({
    name: 'brigade_runs_total',
    help: 'Runs that reached a terminal state, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const queueWait = new Histogram({
    name: 'brigade_run_queue_wait_seconds',
    help: 'Time from a run being created to its first claim by an executor.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const modelCalls = new Counter({
    name: 'brigade_model_calls_total',
    help: 'Model calls by provider, model and status.',
    labelNames: ['provider', 'model', 'status'] as const,
    registers: [registry],
  });
  const modelTokens = new Counter({
    name: 'brigade_model_tokens_total',
    help: 'Model tokens by provider, model and direction (input or output).',
    labelNames: ['provider', 'model', 'direction'] as const,
    registers: [registry],
  });
  const modelCost = new Counter({
    name: 'brigade_model_cost_usd_total',
    help: 'Estimated model cost in USD by provider and model.',
    labelNames: ['provider', 'model'] as const,
    registers: [registry],
  });
  const modelLatency = new Histogram({
    name: 'brigade_model_call_duration_seconds',
    help: 'Model call latency by provider and model.',
    labelNames: ['provider', 'model'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'brigade_rate_limit_rejections_total',
    help: 'Requests and calls refused by a rate limiter, by the scope that refused them.',
    labelNames: ['scope'] as const,
    registers: [registry],
  });
  const scopeLabel = capped(20);
  const statusLabel = capped(20);
  return {
    contentType: registry.contentType,
    observeHttpRequest(sample) {
      const method = knownMethods.has(sample.method) ? sample.method : 'other';
      const route = bounded(sample.route);
      const statusClass = `${Math.min(5, Math.max(1, Math.floor(sample.status / 100)))}xx`;
      httpRequests.inc({ method, route, status_class: statusClass });
      httpDuration.observe({ method, route }, sample.durationSeconds);
    },
    recordRunOutcome(outcome) {
      runs.inc({ outcome });
    },
    observeQueueWait(seconds) {
      if (Number.isFinite(seconds) && seconds >= 0) queueWait.observe(seconds);
    },
    recordModelCall(sample) {
      const labels = { provider: providerLabel(sample.provider), model: modelLabel(sample.model) };
      modelCalls.inc({ ...labels, status: statusLabel(sample.status) });
      if (sample.inputTokens > 0)
        modelTokens.inc({ ...labels, direction: 'input' }, sample.inputTokens);
      if (sample.outputTokens > 0)
        modelTokens.inc({ ...labels, direction: 'output' }, sample.outputTokens);
      if (sample.costUsd > 0) modelCost.inc(labels, sample.costUsd);
      if (Number.isFinite(sample.latencyMs) && sample.latencyMs >= 0)
        modelLatency.observe(labels, sample.latencyMs / 1000);
    },
    recordRateLimitRejection(scope) {
      rateLimited.inc({ scope: scopeLabel(scope) });
    },
    render() {
      return registry.metrics();
    },
  };
}
