import { createHash } from 'node:crypto';
import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';

/** A finished span as the span store keeps it. */
export interface StoredSpan {
  readonly tenantId: string;
  readonly userId: string;
  readonly runId: string | null;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | null;
  readonly name: string;
  readonly kind: string;
  readonly startedAt: Date;
  readonly endedAt: Date;
  readonly status: 'unset' | 'ok' | 'error';
  readonly statusMessage: string | null;
  readonly attributes: Readonly<Record<string, unknown>>;
}

/** Who a span is about: every Brigade span carries its tenant and user (DESIGN.md inv. 11). */
export interface SpanSubject {
  readonly tenantId: string;
  readonly userId: string;
  readonly threadId?: string | null | undefined;
  readonly runId?: string | null | undefined;
}

/** Options of {@link createTracing}. */
export interface TracingOptions {
  /** Share of traces recorded (0–1); child spans follow their parent's decision. */
  readonly sampleRatio: number;
  /** OTLP/HTTP endpoint (`…/v1/traces`); nothing is exported when unset. */
  readonly otlpEndpoint?: string | undefined;
  readonly otlpHeaders?: Readonly<Record<string, string>> | undefined;
  /** `id`: the user id on spans; `pseudonym`: a hash of tenant and user in its place. */
  readonly userAttribute: 'id' | 'pseudonym';
  /** Where finished user spans go (the built-in span store); batched by the caller. */
  readonly store?: ((spans: readonly StoredSpan[]) => Promise<void>) | undefined;
  readonly version: string;
  readonly onStoreError?: ((error: unknown) => void) | undefined;
}

/** Tracing of one Brigade instance. */
export interface Tracing {
  readonly tracer: Tracer;
  /** The attributes every span of `subject` carries. */
  subjectAttributes(subject: SpanSubject): Attributes;
  /**
   * Runs `work` in a new active span; records an exception and ends the span either way. With
   * `parent` (a W3C `traceparent`, see {@link Tracing.traceParent}) the span is that context's
   * child, whatever span is active; an invalid or null one is ignored.
   */
  inSpan<T>(
    name: string,
    options: { kind?: SpanKind; attributes?: Attributes; parent?: string | null },
    work: (span: Span) => Promise<T>,
  ): Promise<T>;
  /**
   * The active span's context as a W3C `traceparent` (`00-<trace>-<span>-<flags>`), to start
   * spans of work done later or elsewhere as its children; undefined when no span is active.
   */
  traceParent(): string | undefined;
  shutdown(): Promise<void>;
}

let contextManagerSet = false;

/** The span active in this async context, if any (to add attributes learnt later). */
export function activeSpan(): Span | undefined {
  return trace.getActiveSpan();
}

/** Trace and span id of the active span, for log lines. */
export function activeTraceIds(): { trace_id: string; span_id: string } | undefined {
  const span = trace.getActiveSpan();
  if (span === undefined) return undefined;
  // Unsampled spans have ids too: they still tie a log line to its request.
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

const traceParentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The context whose span is the one `traceParent` names (remote), or undefined. */
function contextOf(traceParent: string | null | undefined): Context | undefined {
  const match = traceParent == null ? null : traceParentPattern.exec(traceParent);
  if (match === null) return undefined;
  const [, traceId = '', spanId = '', flags = '00'] = match;
  const spanContext = { traceId, spanId, traceFlags: Number.parseInt(flags, 16), isRemote: true };
  return isSpanContextValid(spanContext)
    ? trace.setSpanContext(context.active(), spanContext)
    : undefined;
}

const internalUserAttribute = 'brigade.user.internal_id';

function withoutInternal(attributes: Attributes): Record<string, unknown> {
  const { [internalUserAttribute]: _, ...rest } = attributes;
  return rest;
}

/** Exports spans without the internal user id (which exists only for the span store's RLS). */
class ScrubbingExporter implements SpanExporter {
  private readonly inner: SpanExporter;
  constructor(inner: SpanExporter) {
    this.inner = inner;
  }
  export(spans: ReadableSpan[], done: Parameters<SpanExporter['export']>[1]): void {
    const scrubbed = spans.map((span) =>
      Object.assign(Object.create(span) as ReadableSpan, {
        attributes: withoutInternal(span.attributes),
      }),
    );
    this.inner.export(scrubbed, done);
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

const kinds = ['internal', 'server', 'client', 'producer', 'consumer'] as const;

/**
 * Batches finished spans that carry a tenant and a user into the span store (retention is
 * the store's business). Spans are written after they end, at most every second.
 */
class SpanStoreProcessor implements SpanProcessor {
  /**
   * Spans waiting to be written (buffered or in a batch being written) at most: while the
   * database is slower than the spans arrive, later ones are dropped (and counted) instead of
   * queueing without bound, as OpenTelemetry's batch processor does.
   */
  static readonly maxQueued = 10_000;
  private buffer: StoredSpan[] = [];
  private queued = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly write: (spans: readonly StoredSpan[]) => Promise<void>;
  private readonly onError: (error: unknown) => void;
  constructor(
    write: (spans: readonly StoredSpan[]) => Promise<void>,
    onError: (error: unknown) => void,
  ) {
    this.write = write;
    this.onError = onError;
  }
  onStart(): void {}
  onEnd(span: ReadableSpan): void {
    const attributes = span.attributes;
    const tenantId = attributes['brigade.tenant.id'];
    const userId = attributes[internalUserAttribute];
    if (typeof tenantId !== 'string' || typeof userId !== 'string') return;
    if (this.queued >= SpanStoreProcessor.maxQueued) {
      this.dropped += 1;
      return;
    }
    this.queued += 1;
    const rest = withoutInternal(attributes);
    const status =
      span.status.code === SpanStatusCode.ERROR
        ? 'error'
        : span.status.code === SpanStatusCode.OK
          ? 'ok'
          : 'unset';
    const toDate = ([seconds, nanos]: [number, number]) => new Date(seconds * 1000 + nanos / 1e6);
    this.buffer.push({
      tenantId,
      userId,
      runId: typeof attributes['brigade.run.id'] === 'string' ? attributes['brigade.run.id'] : null,
      traceId: span.spanContext().traceId,
      spanId: span.spanContext().spanId,
      parentSpanId: span.parentSpanContext?.spanId ?? null,
      name: span.name,
      kind: kinds[span.kind] ?? 'internal',
      startedAt: toDate(span.startTime),
      endedAt: toDate(span.endTime),
      status,
      statusMessage: span.status.message ?? null,
      attributes: rest,
    });
    if (this.buffer.length >= 200) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), 1_000).unref();
  }
  async forceFlush(): Promise<void> {
    await this.flush();
  }
  async shutdown(): Promise<void> {
    await this.flush();
  }
  private flush(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    this.writing = this.writing.then(async () => {
      if (this.dropped > 0) {
        this.onError(new Error(`the span store fell behind: ${this.dropped} spans were dropped`));
        this.dropped = 0;
      }
      if (batch.length === 0) return;
      await this.write(batch).catch(this.onError);
      this.queued -= batch.length;
    });
    return this.writing;
  }
}

/**
 * Creates the tracing of a Brigade instance: an OpenTelemetry tracer provider (not the global
 * one, so several instances can live in one process) with parent-based ratio sampling, an
 * OTLP/HTTP exporter when configured, and the built-in span store. Span and attribute names
 * follow the OpenTelemetry GenAI semantic conventions where they apply.
 */
export function createTracing(options: TracingOptions): Tracing {
  if (!contextManagerSet) {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    contextManagerSet = true;
  }
  const processors: SpanProcessor[] = [];
  if (options.otlpEndpoint !== undefined) {
    processors.push(
      new BatchSpanProcessor({
        exporter: new ScrubbingExporter(
          new OTLPTraceExporter({
            url: options.otlpEndpoint,
            headers: { ...(options.otlpHeaders ?? {}) },
          }),
        ),
      }),
    );
  }
  if (options.store !== undefined)
    processors.push(
      new SpanStoreProcessor(options.store, options.onStoreError ?? (() => undefined)),
    );
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': 'brigade',
      'service.version': options.version,
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio) }),
    spanProcessors: processors,
  });
  const tracer = provider.getTracer('brigade', options.version);
  const pseudonym = (subject: SpanSubject) =>
    createHash('sha256')
      .update(`brigade:${subject.tenantId}:${subject.userId}`)
      .digest('hex')
      .slice(0, 32);
  return {
    tracer,
    subjectAttributes(subject) {
      return {
        'brigade.tenant.id': subject.tenantId,
        // Kept for the span store's row-level security; never exported or stored as an attribute.
        [internalUserAttribute]: subject.userId,
        ...(options.userAttribute === 'id'
          ? { 'brigade.user.id': subject.userId }
          : { 'brigade.user.pseudonym': pseudonym(subject) }),
        ...(subject.threadId == null ? {} : { 'brigade.thread.id': subject.threadId }),
        ...(subject.runId == null ? {} : { 'brigade.run.id': subject.runId }),
      };
    },
    traceParent() {
      const span = trace.getActiveSpan();
      if (span === undefined) return undefined;
      const { traceId, spanId, traceFlags } = span.spanContext();
      if (!isSpanContextValid(span.spanContext())) return undefined;
      return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
    },
    inSpan(name, spanOptions, work) {
      return tracer.startActiveSpan(
        name,
        { kind: spanOptions.kind ?? SpanKind.INTERNAL, attributes: spanOptions.attributes ?? {} },
        contextOf(spanOptions.parent) ?? context.active(),
        async (span) => {
          try {
            return await work(span);
          } catch (error) {
            span.setStatus({
              code: SpanStatusCode.ERROR,
              message: (error as { code?: string }).code ?? 'error',
            });
            span.setAttribute('error.type', (error as { code?: string }).code ?? 'error');
            throw error;
          } finally {
            span.end();
          }
        },
      );
    },
    shutdown: () => provider.shutdown(),
  };
}

export { SpanKind, SpanStatusCode };
