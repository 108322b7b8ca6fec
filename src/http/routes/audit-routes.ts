import { z } from '@hono/zod-openapi';
import { ForbiddenError, NotFoundError } from '../../domain/errors.ts';
import { assertCan, type Principal } from '../../domain/identity/principal.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonResponse } from '../route-helpers.ts';

const tenantParams = z.object({ tenantId: idParam('tenantId') });

const auditEventSchema = z
  .object({
    seq: z.int(),
    id: z.uuid(),
    occurredAt: z.iso.datetime(),
    actorKind: z.enum(['operator', 'user', 'system']),
    actorUserId: z.uuid().nullable(),
    actorKeyId: z.uuid().nullable(),
    action: z.string(),
    targetType: z.string().nullable(),
    targetId: z.string().nullable(),
    outcome: z.enum(['success', 'failure', 'denied']),
    reason: z.string().nullable(),
    data: z.record(z.string(), z.unknown()),
    hash: z.string().openapi({ description: 'SHA-256 of the previous hash and this record, hex.' }),
  })
  .openapi('AuditEvent');

const verificationSchema = z
  .object({
    ok: z.boolean(),
    checked: z.int(),
    firstBrokenSeq: z.int().nullable(),
    reason: z.string().nullable(),
  })
  .openapi('AuditVerification');

const listAuditEvents = authedRoute({
  method: 'get',
  path: '/v1/tenants/{tenantId}/audit-events',
  operationId: 'listAuditEvents',
  tags: ['Audit'],
  summary: "The tenant's audit log in sequence order (owners and admins)",
  request: {
    params: tenantParams,
    query: z.strictObject({
      after: z.coerce
        .number()
        .int()
        .min(0)
        .default(0)
        .openapi({ description: 'Return events after this sequence number.' }),
      limit: z.coerce.number().int().min(1).max(500).default(100),
    }),
  },
  responses: {
    200: jsonResponse(
      z.object({ data: z.array(auditEventSchema), nextCursor: z.string().nullable() }),
      'Events.',
    ),
  },
});

const verifyAudit = authedRoute({
  method: 'post',
  path: '/v1/tenants/{tenantId}/audit/verify',
  operationId: 'verifyAudit',
  tags: ['Audit'],
  summary: "Check the tenant's hash chain; reports the first edited, missing or reordered record",
  request: { params: tenantParams },
  responses: { 200: jsonResponse(verificationSchema, 'The verification result.') },
});

function assertAuditor(principal: Principal, tenantId: string): void {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(tenantId)) {
    throw new NotFoundError('tenant_not_found', 'Tenant not found.');
  }
  if (principal.kind === 'user' && principal.tenantId !== tenantId) {
    throw new NotFoundError('tenant_not_found', 'Tenant not found.');
  }
  if (principal.kind === 'user') assertCan(principal, 'audit:read');
  else if (principal.kind !== 'operator') throw new ForbiddenError();
}

/** Registers the audit log operations. */
export function registerAuditRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(listAuditEvents, async (context) => {
    const { tenantId } = context.req.valid('param');
    const { after, limit } = context.req.valid('query');
    assertAuditor(context.get('principal'), tenantId);
    const events = await services.audit.list(context.get('principal'), {
      tenantId,
      after,
      limit: limit + 1,
    });
    const page = events.slice(0, limit);
    return context.json(
      {
        data: page.map((event) => ({
          ...event,
          data: { ...event.data },
          occurredAt: event.occurredAt.toISOString(),
        })),
        nextCursor: events.length > limit ? String(page.at(-1)?.seq ?? after) : null,
      },
      200,
    );
  });
  app.openapi(verifyAudit, async (context) => {
    const { tenantId } = context.req.valid('param');
    assertAuditor(context.get('principal'), tenantId);
    return context.json(await services.audit.verify(context.get('principal'), tenantId), 200);
  });
}
