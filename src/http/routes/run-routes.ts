import { z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Run, RunEvent } from '../../domain/agents/agent-types.ts';
import { AppError, UnauthenticatedError, ValidationError } from '../../domain/errors.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import { activeSpan } from '../../observability/tracing.ts';
import { queuedEvent } from '../../storage/runs/run-rows.ts';
import { createRunSchema, runResponse, runSchema } from '../agent-schemas.ts';
import type { AppEnv, BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';
import { creationPageQuerySchema, pageSchema } from '../schemas.ts';

const threadParams = z.object({ threadId: idParam('threadId') });
const runParams = threadParams.extend({ runId: idParam('runId') });
const terminalEvents = new Set(['run-completed', 'run-failed', 'run-cancelled', 'run-expired']);
const sseResponse = {
  description:
    'Server-sent events: each has an `id` (its sequence number), an `event` type and JSON `data`. A stream that ends early (`event: error`: the credential no longer valid, or the run deleted) gives that event the id of the last event delivered, where a reconnect resumes.',
  content: { 'text/event-stream': { schema: z.string() } },
};

const createRun = authedRoute({
  method: 'post',
  path: '/v1/threads/{threadId}/runs',
  operationId: 'createRun',
  tags: ['Runs'],
  summary: 'Start a run of an agent on your thread (optionally streaming its events)',
  request: { params: threadParams, body: jsonBody(createRunSchema) },
  responses: {
    201: {
      ...jsonResponse(runSchema, 'The queued run.'),
      ...{ content: { ...jsonResponse(runSchema, '').content, ...sseResponse.content } },
    },
    409: problemResponse(
      'The thread is busy (`thread_busy`, strategy `reject`); `activeRunId` names its active run.',
    ),
    429: problemResponse(
      'Too many requests (`rate_limited`), the daily run quota is used up (`quota_exceeded`), or your organisation has too many queued runs (`queue_full`); retry after `Retry-After` seconds.',
      { retry: true },
    ),
  },
});
const listRuns = authedRoute({
  method: 'get',
  path: '/v1/threads/{threadId}/runs',
  operationId: 'listRuns',
  tags: ['Runs'],
  summary: 'List the runs of your thread, oldest first',
  request: { params: threadParams, query: creationPageQuerySchema },
  responses: {
    200: jsonResponse(pageSchema(runSchema, 'RunPage'), 'A page of runs, oldest first.'),
  },
});
const getRun = authedRoute({
  method: 'get',
  path: '/v1/threads/{threadId}/runs/{runId}',
  operationId: 'getRun',
  tags: ['Runs'],
  summary: 'Get a run',
  request: { params: runParams },
  responses: { 200: jsonResponse(runSchema, 'The run.') },
});
const streamRunEvents = authedRoute({
  method: 'get',
  path: '/v1/threads/{threadId}/runs/{runId}/events',
  operationId: 'streamRunEvents',
  tags: ['Runs'],
  summary: 'Stream a run’s events (SSE); reconnect with Last-Event-ID to resume without loss',
  request: {
    params: runParams,
    query: z.strictObject({
      after: z.coerce
        .number()
        .int()
        .min(0)
        .optional()
        .openapi({ description: 'Resume after this event id (same as Last-Event-ID).' }),
    }),
  },
  // Declared here, not in `request.headers`: `lastEventId` validates it, after the run is
  // found (404 first), with an empty value read as absent.
  parameters: [
    {
      name: 'Last-Event-ID',
      in: 'header',
      required: false,
      description:
        'Resume after this event id, as an EventSource sends it when it reconnects (same as `?after`, which it overrides; empty means absent). Digits only, else 422.',
      schema: { type: 'string', pattern: '^\\d{1,15}$' },
    },
  ],
  responses: { 200: sseResponse },
});
const cancelRun = authedRoute({
  method: 'post',
  path: '/v1/threads/{threadId}/runs/{runId}/cancel',
  operationId: 'cancelRun',
  tags: ['Runs'],
  summary: 'Cancel a run; an in-flight model call is aborted at once',
  request: { params: runParams },
  responses: {
    202: jsonResponse(runSchema, 'The run (cancelled, or cancelling).'),
    409: problemResponse('The run already ended (`run_not_active`).'),
  },
});

/**
 * Whether the stream's credential still authenticates as the same principal. Only a refusal
 * ends the stream: a check that fails otherwise (the database busy) is tried again next time.
 */
async function stillAuthorised(context: Context<AppEnv>, principal: Principal): Promise<boolean> {
  try {
    const now = await context.get('reauthentication').check();
    if (now.kind !== principal.kind) return false;
    return (
      now.kind === 'operator' || (principal.kind === 'user' && now.userId === principal.userId)
    );
  } catch (error) {
    return !(error instanceof UnauthenticatedError);
  }
}

/** How often an idle stream asks whether its run ended without it seeing the final event. */
const statusCheckMs = 5_000;

/** Whether a streamed run may still send events, ended, or is gone (its thread deleted). */
async function runState(
  services: RouteServices,
  principal: Principal,
  run: Run,
): Promise<'active' | 'ended' | 'gone'> {
  try {
    const current = await services.threads.getRun(principal, run.threadId, run.id);
    return ['queued', 'running', 'requires_action'].includes(current.status) ? 'active' : 'ended';
  } catch (error) {
    if (error instanceof AppError && ['run_not_found', 'thread_not_found'].includes(error.code))
      return 'gone';
    throw error;
  }
}

/**
 * An `error` event that ends a stream. It is not one of the run's stored events, so its id is
 * the last event delivered (`after`): every event has an id, and a client that reconnects with
 * it (an EventSource does, with `Last-Event-ID`) resumes after what it had, missing nothing and
 * getting nothing twice.
 */
function errorEvent(after: number, data: string): string {
  return `id: ${after}\nevent: error\ndata: ${data}\n\n`;
}

/**
 * Ends a stream whose run sends nothing more: an ended run's events after `after` (its final
 * one may have committed just before the check), or, for a run deleted with its thread, an
 * `error` event. A client reconnecting after the final event (an EventSource does) so gets an
 * empty stream that closes, not keep-alives forever.
 */
async function finish(
  stream: { write(text: string): Promise<unknown> },
  options: {
    services: RouteServices;
    principal: Principal;
    run: Run;
    after: number;
    state: 'ended' | 'gone';
  },
): Promise<void> {
  const { services, principal, run, after } = options;
  if (options.state === 'gone') {
    const data = JSON.stringify({
      runId: run.id,
      code: 'run_not_found',
      message: 'The run was deleted with its thread.',
    });
    await stream.write(errorEvent(after, data));
    return;
  }
  let batch = '';
  for (const event of await services.threads.runEvents(principal, run, after)) {
    const data = JSON.stringify({ runId: run.id, seq: event.seq, ...event.data });
    batch += `id: ${event.seq}\nevent: ${event.type}\ndata: ${data}\n\n`;
  }
  if (batch.length > 0) await stream.write(batch);
}

function streamEvents(
  context: Context<AppEnv>,
  options: {
    services: RouteServices;
    principal: Principal;
    run: Run;
    after: number;
    /** The run's events the caller knows from their first on (see RunSignals.subscribe). */
    known?: readonly RunEvent[];
  },
) {
  const { services, principal, run } = options;
  return streamSSE(context, async (stream) => {
    const aborted = new AbortController();
    stream.onAbort(() => aborted.abort());
    const keepAlive = setInterval(() => {
      stream.write(': keep-alive\n\n').catch(() => aborted.abort());
    }, 15_000);
    let after = options.after;
    let checkedAt = Date.now();
    // At the first empty read, then every few seconds: has the run ended or gone?
    let statusCheckedAt = 0;
    const reader = principal.kind === 'user' ? principal.userId : '';
    const subscription = services.eventHub.subscribe(run.id, reader, options.known);
    try {
      while (!aborted.signal.aborted) {
        // Events this process committed arrive with their wake-up; anything else is read.
        const events =
          subscription.take(after) ?? (await services.threads.runEvents(principal, run, after));
        // A batch goes out in one write (one syscall, one chunk), with backpressure.
        let batch = '';
        let finished = false;
        for (const event of events) {
          const data = JSON.stringify({ runId: run.id, seq: event.seq, ...event.data });
          batch += `id: ${event.seq}\nevent: ${event.type}\ndata: ${data}\n\n`;
          after = event.seq;
          if (terminalEvents.has(event.type)) {
            finished = true;
            break;
          }
        }
        if (batch.length > 0) await stream.write(batch);
        if (finished) return;
        // A key revoked, a user disabled or a tenant suspended ends open streams too.
        if (Date.now() - checkedAt >= context.get('reauthentication').everyMs) {
          checkedAt = Date.now();
          if (!(await stillAuthorised(context, principal))) {
            const data = JSON.stringify({
              runId: run.id,
              code: 'unauthenticated',
              message: 'The credential of this stream is no longer valid.',
            });
            await stream.write(errorEvent(after, data));
            return;
          }
        }
        if (events.length === 0) {
          if (Date.now() - statusCheckedAt >= statusCheckMs) {
            statusCheckedAt = Date.now();
            const state = await runState(services, principal, run);
            if (state !== 'active') {
              await finish(stream, { services, principal, run, after, state });
              return;
            }
          }
          await subscription.wait(1_000, aborted.signal);
        }
      }
    } finally {
      clearInterval(keepAlive);
      subscription.close();
    }
  });
}

/**
 * Where a stream resumes: the `Last-Event-ID` header (what an EventSource sends when it
 * reconnects), else `?after`, else the start. The header must be an event id as this API
 * sends them, digits only (422 otherwise, as for `?after`): `1e3` or `-1` is not read as
 * something else.
 */
function lastEventId(context: Context<AppEnv>, query: number | undefined): number {
  const header = context.req.header('last-event-id');
  if (header === undefined || header === '') return query ?? 0;
  if (!/^\d{1,15}$/.test(header))
    throw new ValidationError([
      { path: 'header.last-event-id', message: 'must be an event id: digits only, at most 15' },
    ]);
  return Number(header);
}

/** Registers the run operations, including SSE streaming. */
export function registerRunRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createRun, async (context) => {
    const body = context.req.valid('json');
    const principal = context.get('principal');
    const run = await services.threads.createRun(principal, context.req.valid('param').threadId, {
      agentId: body.agentId,
      input: body.input,
      strategy: body.strategy,
      priority: body.priority,
    });
    // The request's span names the run it created (the run's own spans are its children).
    activeSpan()?.setAttribute('brigade.run.id', run.id);
    if (body.stream) {
      context.status(201);
      // The run was committed with its first event, so the stream needs no read to begin.
      return streamEvents(context, {
        services,
        principal,
        run,
        after: 0,
        ...(principal.kind === 'user' ? { known: [queuedEvent(run)] } : {}),
      }) as never;
    }
    return context.json(runResponse(run), 201);
  });
  app.openapi(listRuns, async (context) => {
    const page = await services.threads.listRuns(
      context.get('principal'),
      context.req.valid('param').threadId,
      context.req.valid('query'),
    );
    return context.json({ data: page.data.map(runResponse), nextCursor: page.nextCursor }, 200);
  });
  app.openapi(getRun, async (context) => {
    const { threadId, runId } = context.req.valid('param');
    const run = await services.threads.getRun(context.get('principal'), threadId, runId);
    return context.json(runResponse(run), 200);
  });
  app.openapi(streamRunEvents, async (context) => {
    const { threadId, runId } = context.req.valid('param');
    const principal = context.get('principal');
    const run = await services.threads.getRun(principal, threadId, runId);
    const after = lastEventId(context, context.req.valid('query').after);
    return streamEvents(context, { services, principal, run, after }) as never;
  });
  app.openapi(cancelRun, async (context) => {
    const { threadId, runId } = context.req.valid('param');
    const run = await services.threads.cancelRun(context.get('principal'), threadId, runId);
    return context.json(runResponse(run), 202);
  });
}
