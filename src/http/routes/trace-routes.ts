import { z } from '@hono/zod-openapi';
import { asTenantUser } from '../../domain/agents/agent-service.ts';
import { AppError, NotFoundError } from '../../domain/errors.ts';
import { can, type Principal } from '../../domain/identity/principal.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonResponse } from '../route-helpers.ts';

const params = z.object({ threadId: idParam('threadId'), runId: idParam('runId') });

const spanSchema = z
  .object({
    traceId: z.string(),
    spanId: z.string(),
    parentSpanId: z.string().nullable(),
    name: z.string(),
    kind: z.string(),
    startedAt: z.iso.datetime(),
    endedAt: z.iso.datetime(),
    durationMs: z.number(),
    status: z.enum(['unset', 'ok', 'error']),
    statusMessage: z.string().nullable(),
    attributes: z.record(z.string(), z.unknown()),
  })
  .openapi('Span');

const getRunTrace = authedRoute({
  method: 'get',
  path: '/v1/threads/{threadId}/runs/{runId}/trace',
  operationId: 'getRunTrace',
  tags: ['Runs'],
  summary: "A run's trace from the built-in span store: the run, its model calls and tool calls",
  description:
    "The caller's own run; owners and admins read any run of their tenant (API keys need `audit:read` for that). Runs are visible to their user alone, so an owner or admin is answered from the run's stored spans only: a run with none stored (not sampled, past `tracing.retentionHours`, `tracing.store` off, or not yet written) is 404 `run_not_found` for them, as is a run of another thread or tenant.",
  request: { params },
  responses: {
    200: jsonResponse(
      z.object({
        runId: z.uuid(),
        spans: z.array(spanSchema).openapi({
          description:
            'Oldest first. Spans are written about a second after they end and kept for `tracing.retentionHours`; empty when the run was not sampled.',
        }),
      }),
      'The trace.',
    ),
  },
});

/** Whether a caller reads the traces of every run of its tenant (owners and admins). */
function canReadAll(principal: Principal): boolean {
  return principal.kind === 'user' && can(principal, 'audit:read');
}

/** Registers `getRunTrace`. */
export function registerTraceRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(getRunTrace, async (context) => {
    const principal = context.get('principal');
    const { threadId, runId } = context.req.valid('param');
    // The caller's own run; or, for the tenant's owners and admins, any run of the tenant.
    const own = await services.threads.getRun(principal, threadId, runId).then(
      () => true,
      (error: unknown) => {
        if (error instanceof AppError && error.code === 'run_not_found' && canReadAll(principal))
          return false;
        throw error;
      },
    );
    const user = asTenantUser(principal);
    // Runs are their user's alone (row-level security, admins included): an admin reads
    // another user's run from its stored spans, which must name the run and its thread.
    const spans = await services.spans.runTrace(
      { tenantId: user.tenantId, userId: user.userId, tenantAdmin: !own },
      own ? { runId } : { runId, threadId: threadId.toLowerCase() },
    );
    if (!own && spans.length === 0) throw new NotFoundError('run_not_found', 'Run not found.');
    return context.json(
      {
        runId: runId.toLowerCase(),
        spans: spans.map((span) => ({
          ...span,
          status: span.status as 'unset' | 'ok' | 'error',
          startedAt: span.startedAt.toISOString(),
          endedAt: span.endedAt.toISOString(),
          attributes: { ...span.attributes },
        })),
      },
      200,
    );
  });
}
