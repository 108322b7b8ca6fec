import { createRoute, z } from '@hono/zod-openapi';
import { AppError, ForbiddenError, NotFoundError } from '../../domain/errors.ts';
import { assertCan, type Principal } from '../../domain/identity/principal.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonResponse, problemResponse } from '../route-helpers.ts';
import { nullableComponent } from '../schemas.ts';

const tenantParams = z.object({ tenantId: idParam('tenantId') });

/**
 * A sequence-number cursor: decimal digits only (`1e3`, `0x10`, `2.5`, an empty value are 422),
 * at most 15 of them so it stays an exact JavaScript number.
 */
const afterSeq = (description: string) =>
  z
    .string()
    .regex(/^[0-9]{1,15}$/, 'Must be a decimal integer (digits only).')
    .default('0')
    .transform(Number)
    .openapi({ type: 'string', pattern: '^[0-9]{1,15}$', description });

const auditEventSchema = z
  .object({
    seq: z.int(),
    id: z.uuid(),
    occurredAt: z.iso.datetime().openapi({
      description:
        'UTC with microseconds (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), exactly as the hash covers it.',
    }),
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
    hashVersion: z.int().openapi({
      description:
        "The hash's encoding of the record: 1 for events written before migration 0043, 2 since (see docs/observability.md).",
    }),
  })
  .openapi('AuditEvent');

const publicKeySchema = z
  .object({
    algorithm: z.literal('Ed25519'),
    keyId: z.string(),
    publicKeyPem: z.string().openapi({ description: 'SPKI PEM.' }),
  })
  .openapi('AuditPublicKey');

const verificationSchema = z
  .object({
    ok: z.boolean(),
    checked: z.int(),
    firstBrokenSeq: z.int().nullable(),
    reason: z.string().nullable(),
    checkpoints: z.object({ checked: z.int(), latestSeq: z.int().nullable() }),
    publicKey: nullableComponent(publicKeySchema),
  })
  .openapi('AuditVerification');

const checkpointSchema = z
  .object({
    tenantId: z.uuid(),
    seq: z.int(),
    hash: z.string().openapi({ description: 'Chain hash of event `seq`, hex.' }),
    signedAt: z.iso.datetime(),
    keyId: z.string(),
    signature: z.string().openapi({
      description:
        'Ed25519 signature, base64, over the lines `brigade-audit-checkpoint-v1`, tenantId, seq, hash, signedAt, keyId joined by \\n.',
    }),
  })
  .openapi('AuditCheckpoint');

const getAuditPublicKey = createRoute({
  method: 'get',
  path: '/v1/audit/public-key',
  operationId: 'getAuditPublicKey',
  tags: ['Audit'],
  summary: 'The public key audit checkpoints are signed with (public, no credentials)',
  responses: {
    200: jsonResponse(
      z.object({ checkpointsEnabled: z.boolean(), publicKey: nullableComponent(publicKeySchema) }),
      'The key, or null when no signing key is configured.',
    ),
  },
});

const listAuditCheckpoints = authedRoute({
  method: 'get',
  path: '/v1/tenants/{tenantId}/audit/checkpoints',
  operationId: 'listAuditCheckpoints',
  tags: ['Audit'],
  summary: "The tenant's signed audit checkpoints in sequence order (owners and admins)",
  request: {
    params: tenantParams,
    query: z.strictObject({
      after: afterSeq('Return checkpoints after this sequence number.'),
      limit: z.coerce.number().int().min(1).max(500).default(100),
    }),
  },
  responses: {
    200: jsonResponse(
      z.object({ data: z.array(checkpointSchema), nextCursor: z.string().nullable() }),
      'Checkpoints.',
    ),
  },
});

const createAuditCheckpoint = authedRoute({
  method: 'post',
  path: '/v1/tenants/{tenantId}/audit/checkpoints',
  operationId: 'createAuditCheckpoint',
  tags: ['Audit'],
  summary: 'Sign a checkpoint at the newest event now (owners and admins)',
  request: { params: tenantParams },
  responses: {
    200: jsonResponse(
      z.object({ checkpoint: nullableComponent(checkpointSchema) }),
      'The new checkpoint, or null when no event was added since the last one.',
    ),
    409: problemResponse(
      'No audit signing key is configured on this server, or the chain does not verify (nothing was signed): `detail` names the first broken event and the reason, as `verifyAudit` does.',
    ),
  },
});

const listAuditEvents = authedRoute({
  method: 'get',
  path: '/v1/tenants/{tenantId}/audit-events',
  operationId: 'listAuditEvents',
  tags: ['Audit'],
  summary: "The tenant's audit log in sequence order (owners and admins)",
  request: {
    params: tenantParams,
    query: z.strictObject({
      after: afterSeq('Return events after this sequence number.'),
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

/**
 * Admits owners and admins of the tenant and the operator; 404 `tenant_not_found` for another
 * tenant, and for a tenant that does not exist (the operator may name any tenant, so it is
 * looked up: an unknown one must not pass as an empty, intact log).
 */
async function assertAuditor(
  services: RouteServices,
  principal: Principal,
  tenantId: string,
): Promise<void> {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(tenantId)) {
    throw new NotFoundError('tenant_not_found', 'Tenant not found.');
  }
  if (principal.kind === 'user' && principal.tenantId !== tenantId) {
    throw new NotFoundError('tenant_not_found', 'Tenant not found.');
  }
  if (principal.kind === 'user') assertCan(principal, 'audit:read');
  else if (principal.kind !== 'operator') throw new ForbiddenError();
  else await services.identity.getTenant(principal, tenantId);
}

/** Registers the audit log operations. */
export function registerAuditRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(listAuditEvents, async (context) => {
    const { tenantId } = context.req.valid('param');
    const { after, limit } = context.req.valid('query');
    await assertAuditor(services, context.get('principal'), tenantId);
    const events = await services.audit.list(context.get('principal'), {
      tenantId,
      after,
      limit: limit + 1,
    });
    const page = events.slice(0, limit);
    return context.json(
      {
        data: page.map((event) => ({ ...event, data: { ...event.data } })),
        nextCursor: events.length > limit ? String(page.at(-1)?.seq ?? after) : null,
      },
      200,
    );
  });
  app.openapi(verifyAudit, async (context) => {
    const { tenantId } = context.req.valid('param');
    await assertAuditor(services, context.get('principal'), tenantId);
    return context.json(await services.audit.verify(context.get('principal'), tenantId), 200);
  });
  app.openapi(getAuditPublicKey, (context) =>
    context.json(
      {
        checkpointsEnabled: services.auditCheckpoints.enabled,
        publicKey: services.auditCheckpoints.publicKey ?? null,
      },
      200,
    ),
  );
  app.openapi(listAuditCheckpoints, async (context) => {
    const { tenantId } = context.req.valid('param');
    const { after, limit } = context.req.valid('query');
    await assertAuditor(services, context.get('principal'), tenantId);
    const checkpoints = await services.auditCheckpoints.list(context.get('principal'), {
      tenantId,
      after,
      limit: limit + 1,
    });
    const page = checkpoints.slice(0, limit);
    return context.json(
      {
        data: page.map((checkpoint) => ({
          ...checkpoint,
          signedAt: checkpoint.signedAt.toISOString(),
        })),
        nextCursor: checkpoints.length > limit ? String(page.at(-1)?.seq ?? after) : null,
      },
      200,
    );
  });
  app.openapi(createAuditCheckpoint, async (context) => {
    const { tenantId } = context.req.valid('param');
    const principal = context.get('principal');
    await assertAuditor(services, principal, tenantId);
    if (!services.auditCheckpoints.enabled)
      throw new AppError('conflict', 'No audit signing key is configured on this server.');
    const checkpoint = await services.auditCheckpoints.checkpoint(tenantId);
    return context.json(
      {
        checkpoint:
          checkpoint === undefined
            ? null
            : { ...checkpoint, signedAt: checkpoint.signedAt.toISOString() },
      },
      200,
    );
  });
}
