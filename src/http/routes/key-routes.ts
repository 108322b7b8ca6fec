import { z } from '@hono/zod-openapi';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';
import {
  apiKeyResponse,
  apiKeySchema,
  createApiKeySchema,
  createdApiKeySchema,
  pageQuerySchema,
  pageSchema,
  rotateApiKeySchema,
} from '../schemas.ts';

const userParams = z.object({ tenantId: idParam('tenantId'), userId: idParam('userId') });
const keyParams = userParams.extend({ keyId: idParam('keyId') });
const base = '/v1/tenants/{tenantId}/users/{userId}/api-keys';

const createApiKey = authedRoute({
  method: 'post',
  path: base,
  operationId: 'createApiKey',
  tags: ['API keys'],
  summary: 'Create an API key for a user; the secret is returned once',
  request: { params: userParams, body: jsonBody(createApiKeySchema) },
  responses: {
    201: jsonResponse(createdApiKeySchema, 'The key with its secret.'),
    409: problemResponse(
      'The user is disabled, or has `limits.perTenant.apiKeysPerUser` active keys (`resource_limit_exceeded`).',
    ),
  },
});

const listApiKeys = authedRoute({
  method: 'get',
  path: base,
  operationId: 'listApiKeys',
  tags: ['API keys'],
  summary: "List a user's API keys (metadata only)",
  request: { params: userParams, query: pageQuerySchema },
  responses: { 200: jsonResponse(pageSchema(apiKeySchema, 'ApiKeyPage'), 'A page of keys.') },
});

const revokeApiKey = authedRoute({
  method: 'delete',
  path: `${base}/{keyId}`,
  operationId: 'revokeApiKey',
  tags: ['API keys'],
  summary: 'Revoke an API key at once',
  request: { params: keyParams },
  responses: { 200: jsonResponse(apiKeySchema, 'The revoked key.') },
});

const rotateApiKey = authedRoute({
  method: 'post',
  path: `${base}/{keyId}/rotate`,
  operationId: 'rotateApiKey',
  tags: ['API keys'],
  summary: 'Replace a key with a new secret; the old one stops working after the grace period',
  request: {
    params: keyParams,
    body: { required: false, content: { 'application/json': { schema: rotateApiKeySchema } } },
  },
  responses: {
    201: jsonResponse(createdApiKeySchema, 'The new key with its secret.'),
    409: problemResponse(
      'The key is revoked, expired or already rotated (rotate its successor), or the user is disabled, or a grace period would give the user more than `limits.perTenant.apiKeysPerUser` working keys (`resource_limit_exceeded`).',
    ),
  },
});

/** Registers the API key operations. */
export function registerKeyRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createApiKey, async (context) => {
    const body = context.req.valid('json');
    const created = await services.identity.createApiKey(
      context.get('principal'),
      context.req.valid('param'),
      {
        name: body.name,
        scopes: body.scopes,
        expiresAt: body.expiresAt === undefined ? undefined : new Date(body.expiresAt),
      },
    );
    return context.json({ ...apiKeyResponse(created.key), secret: created.secret }, 201);
  });
  app.openapi(listApiKeys, async (context) => {
    const page = await services.identity.listApiKeys(
      context.get('principal'),
      context.req.valid('param'),
      context.req.valid('query'),
    );
    const now = new Date();
    return context.json(
      { data: page.data.map((key) => apiKeyResponse(key, now)), nextCursor: page.nextCursor },
      200,
    );
  });
  app.openapi(revokeApiKey, async (context) => {
    const key = await services.identity.revokeApiKey(
      context.get('principal'),
      context.req.valid('param'),
    );
    return context.json(apiKeyResponse(key), 200);
  });
  app.openapi(rotateApiKey, async (context) => {
    const body = context.req.valid('json') as { gracePeriodSeconds?: number } | undefined;
    const created = await services.identity.rotateApiKey(
      context.get('principal'),
      context.req.valid('param'),
      body?.gracePeriodSeconds ?? 0,
    );
    return context.json({ ...apiKeyResponse(created.key), secret: created.secret }, 201);
  });
}
