import { z } from '@hono/zod-openapi';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';
import {
  createTenantSchema,
  pageQuerySchema,
  pageSchema,
  tenantResponse,
  tenantSchema,
  updateTenantSchema,
} from '../schemas.ts';

const createTenant = authedRoute({
  method: 'post',
  path: '/v1/tenants',
  operationId: 'createTenant',
  tags: ['Tenants'],
  summary: 'Create a tenant (platform operator only)',
  request: { body: jsonBody(createTenantSchema) },
  responses: {
    201: jsonResponse(tenantSchema, 'The tenant.'),
    409: problemResponse('The slug is taken.'),
  },
});

const listTenants = authedRoute({
  method: 'get',
  path: '/v1/tenants',
  operationId: 'listTenants',
  tags: ['Tenants'],
  summary: 'List tenants (all for the operator, your own for a user)',
  request: { query: pageQuerySchema },
  responses: { 200: jsonResponse(pageSchema(tenantSchema, 'TenantPage'), 'A page of tenants.') },
});

const getTenant = authedRoute({
  method: 'get',
  path: '/v1/tenants/{tenantId}',
  operationId: 'getTenant',
  tags: ['Tenants'],
  summary: 'Get a tenant',
  request: { params: z.object({ tenantId: idParam('tenantId') }) },
  responses: { 200: jsonResponse(tenantSchema, 'The tenant.') },
});

const updateTenant = authedRoute({
  method: 'patch',
  path: '/v1/tenants/{tenantId}',
  operationId: 'updateTenant',
  tags: ['Tenants'],
  summary: 'Rename or re-zone a tenant (owners), or suspend and reactivate it (operator)',
  request: {
    params: z.object({ tenantId: idParam('tenantId') }),
    body: jsonBody(updateTenantSchema),
  },
  responses: { 200: jsonResponse(tenantSchema, 'The tenant.') },
});

/** Registers the tenant operations. */
export function registerTenantRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createTenant, async (context) => {
    const tenant = await services.identity.createTenant(
      context.get('principal'),
      context.req.valid('json'),
    );
    return context.json(tenantResponse(tenant), 201);
  });
  app.openapi(listTenants, async (context) => {
    const page = await services.identity.listTenants(
      context.get('principal'),
      context.req.valid('query'),
    );
    return context.json({ data: page.data.map(tenantResponse), nextCursor: page.nextCursor }, 200);
  });
  app.openapi(updateTenant, async (context) => {
    const body = context.req.valid('json');
    const patch = Object.fromEntries(
      Object.entries(body).filter(([, value]) => value !== undefined),
    );
    const tenant = await services.identity.updateTenant(
      context.get('principal'),
      context.req.valid('param').tenantId,
      patch,
    );
    return context.json(tenantResponse(tenant), 200);
  });
  app.openapi(getTenant, async (context) => {
    const tenant = await services.identity.getTenant(
      context.get('principal'),
      context.req.valid('param').tenantId,
    );
    return context.json(tenantResponse(tenant), 200);
  });
}
