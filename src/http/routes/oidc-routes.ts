import { z } from '@hono/zod-openapi';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';
import { createOidcProviderSchema, oidcProviderResponse, oidcProviderSchema } from '../schemas.ts';

const tenantParams = z.object({ tenantId: idParam('tenantId') });
const base = '/v1/tenants/{tenantId}/oidc-providers';

const createOidcProvider = authedRoute({
  method: 'post',
  path: base,
  operationId: 'createOidcProvider',
  tags: ['Identity'],
  summary: 'Trust a JWT issuer for sign-in to this tenant (owners only)',
  request: { params: tenantParams, body: jsonBody(createOidcProviderSchema) },
  responses: {
    201: jsonResponse(oidcProviderSchema, 'The provider.'),
    409: problemResponse('The tenant trusts this issuer for this audience already.'),
  },
});

const listOidcProviders = authedRoute({
  method: 'get',
  path: base,
  operationId: 'listOidcProviders',
  tags: ['Identity'],
  summary: "List the tenant's OIDC providers",
  request: { params: tenantParams },
  responses: {
    200: jsonResponse(z.object({ data: z.array(oidcProviderSchema) }), 'The providers.'),
  },
});

const deleteOidcProvider = authedRoute({
  method: 'delete',
  path: `${base}/{providerId}`,
  operationId: 'deleteOidcProvider',
  tags: ['Identity'],
  summary: 'Stop trusting an issuer (owners only)',
  request: { params: tenantParams.extend({ providerId: idParam('providerId') }) },
  responses: { 204: { description: 'Deleted.' } },
});

/** Registers the OIDC provider operations. */
export function registerOidcRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createOidcProvider, async (context) => {
    const body = context.req.valid('json');
    const provider = await services.identity.createOidcProvider(
      context.get('principal'),
      context.req.valid('param').tenantId,
      {
        ...body,
        jwksUrl: body.jwksUrl ?? null,
        publicKeysPem: body.publicKeysPem ?? null,
      },
    );
    return context.json(oidcProviderResponse(provider), 201);
  });
  app.openapi(listOidcProviders, async (context) => {
    const providers = await services.identity.listOidcProviders(
      context.get('principal'),
      context.req.valid('param').tenantId,
    );
    return context.json({ data: providers.map(oidcProviderResponse) }, 200);
  });
  app.openapi(deleteOidcProvider, async (context) => {
    const { tenantId, providerId } = context.req.valid('param');
    await services.identity.deleteOidcProvider(context.get('principal'), tenantId, providerId);
    return context.body(null, 204);
  });
}
