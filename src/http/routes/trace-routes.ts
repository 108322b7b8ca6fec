import { z } from '@hono/zod-openapi';
import { asTenantUser } from '../../domain/agents/agent-service.ts';
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

/** Registers `getRunTrace`. */
export function registerTraceRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(getRunTrace, async (context) => {
    const principal = context.get('principal');
    const { threadId, runId } = context.req.valid('param');
    // The run must be the caller's own (404 otherwise, as for the run itself).
    const run = await services.threads.getRun(principal, threadId, runId);
    const user = asTenantUser(principal);
    const spans = await services.spans.runTrace(
      { tenantId: user.tenantId, userId: user.userId, tenantAdmin: false },
      run.id,
    );
    return context.json(
      {
        runId: run.id,
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
