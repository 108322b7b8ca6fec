import { z } from '@hono/zod-openapi';
import type { Consent } from '../../domain/consent/consent-types.ts';
import { consentPurposePattern, consentScopePattern } from '../../domain/consent/consent-types.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse } from '../route-helpers.ts';

const actorSchema = z.object({
  kind: z.enum(['user', 'operator']),
  userId: z.uuid().nullable(),
});

const consentSchema = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid(),
    userId: z.uuid(),
    purpose: z.string(),
    scope: z.string(),
    version: z.string(),
    status: z.enum(['granted', 'revoked']),
    grantedAt: z.iso.datetime(),
    grantedBy: actorSchema,
    revokedAt: z.iso.datetime().nullable(),
    revokedBy: actorSchema.nullable(),
  })
  .openapi('Consent');

const grantConsentSchema = z
  .strictObject({
    purpose: z.string().regex(consentPurposePattern, 'not a known purpose').openapi({
      description:
        '`content_capture`, `long_term_memory` or `tool:<tool name>`: a built-in tool, one of the tenant’s HTTP tools, or `mcp:<server>:<tool>` of one of its MCP servers (422 otherwise).',
      example: 'long_term_memory',
    }),
    scope: z
      .string()
      .regex(consentScopePattern, '`*` or an agent id')
      // Stored as ids are (lower case), so an agent id in capitals still matches its runs.
      .transform((scope) => scope.toLowerCase())
      .default('*')
      .openapi({
        description:
          'What the consent covers within its purpose: `*` (every agent) or the id of one agent of the caller’s tenant (422 for any other id, another tenant’s agent included). `long_term_memory` takes only `*` (long-term memory is shared by all of the user’s agents).',
      }),
    version: z.string().min(1).max(50).openapi({
      description: 'Version of the terms the user agreed to.',
      example: '2025-01',
    }),
  })
  .refine((input) => input.purpose !== 'long_term_memory' || input.scope === '*', {
    path: ['scope'],
    message: "must be '*' for long_term_memory (shared by every agent)",
  })
  .openapi('GrantConsent');

const consentList = z.object({ data: z.array(consentSchema) });

function consentResponse(consent: Consent) {
  return {
    ...consent,
    grantedBy: { ...consent.grantedBy },
    revokedBy: consent.revokedBy === null ? null : { ...consent.revokedBy },
    grantedAt: consent.grantedAt.toISOString(),
    revokedAt: consent.revokedAt?.toISOString() ?? null,
  };
}

const listConsents = authedRoute({
  method: 'get',
  path: '/v1/me/consents',
  operationId: 'listConsents',
  tags: ['Consent'],
  summary: "The caller's consents, newest first",
  request: {
    query: z.strictObject({ status: z.enum(['granted', 'revoked']).optional() }),
  },
  responses: { 200: jsonResponse(consentList, 'Consents.') },
});

const grantConsent = authedRoute({
  method: 'post',
  path: '/v1/me/consents',
  operationId: 'grantConsent',
  tags: ['Consent'],
  summary: 'Grant a consent; a granted one of the same purpose and scope is superseded (audited)',
  request: { body: jsonBody(grantConsentSchema) },
  responses: { 201: jsonResponse(consentSchema, 'The granted consent.') },
});

const revokeConsent = authedRoute({
  method: 'post',
  path: '/v1/me/consents/{consentId}/revoke',
  operationId: 'revokeConsent',
  tags: ['Consent'],
  summary: 'Revoke one of the caller’s granted consents (audited)',
  request: { params: z.object({ consentId: idParam('consentId') }) },
  responses: { 200: jsonResponse(consentSchema, 'The revoked consent.') },
});

const listUserConsents = authedRoute({
  method: 'get',
  path: '/v1/tenants/{tenantId}/users/{userId}/consents',
  operationId: 'listUserConsents',
  tags: ['Consent'],
  summary: "A user's consents (owners and admins of the tenant)",
  request: {
    params: z.object({ tenantId: idParam('tenantId'), userId: idParam('userId') }),
  },
  responses: { 200: jsonResponse(consentList, 'Consents.') },
});

/** Registers the consent operations. */
export function registerConsentRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(listConsents, async (context) => {
    const { status } = context.req.valid('query');
    const consents = await services.consents.listOwn(context.get('principal'), status);
    return context.json({ data: consents.map(consentResponse) }, 200);
  });
  app.openapi(grantConsent, async (context) => {
    const input = context.req.valid('json');
    const consent = await services.consents.grant(context.get('principal'), {
      purpose: input.purpose as Consent['purpose'],
      scope: input.scope,
      version: input.version,
    });
    return context.json(consentResponse(consent), 201);
  });
  app.openapi(revokeConsent, async (context) => {
    const { consentId } = context.req.valid('param');
    const consent = await services.consents.revoke(context.get('principal'), consentId);
    return context.json(consentResponse(consent), 200);
  });
  app.openapi(listUserConsents, async (context) => {
    const { tenantId, userId } = context.req.valid('param');
    const principal = context.get('principal');
    const consents = await services.consents.listForUser(principal, { tenantId, userId });
    // A user that does not exist is 404, like every other per-user operation.
    await services.identity.getUser(principal, tenantId, userId);
    return context.json({ data: consents.map(consentResponse) }, 200);
  });
}
