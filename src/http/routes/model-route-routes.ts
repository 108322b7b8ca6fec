import { z } from '@hono/zod-openapi';
import type { ModelRouteDefinition } from '../../gateway/model-routes.ts';
import { modelRouteSchema } from '../../gateway/route-schema.ts';
import type { ListedModelRoute } from '../../runtime/model-route-service.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import {
  authedRoute,
  idParam,
  jsonBody,
  jsonResponse,
  mergePatch,
  patchBody,
  problemResponse,
} from '../route-helpers.ts';

const params = z.object({ routeId: idParam('routeId') });

// The schema is shared with the config file (plain zod), so it carries no OpenAPI names.
const routeBody = modelRouteSchema.describe(
  'A name callers use as a model. Deployments are `local` or `<provider>:<model id>` of a configured provider; fallbacks name other routes and the failures (rate_limited, server_error, timeout, context_length, content_filter) that hand over to them.',
);

const routeResponseSchema = modelRouteSchema.extend({
  id: z.uuid().nullable().describe('Null for platform routes.'),
  scope: z.enum(['tenant', 'platform']),
  version: z.int().nullable(),
  createdAt: z.iso.datetime().nullable(),
  updatedAt: z.iso.datetime().nullable(),
});

const conflict = {
  409: problemResponse(
    'A route with this name exists already, or the tenant has `limits.perTenant.modelRoutes` routes (`resource_limit_exceeded`).',
  ),
};

/** A route other tenant routes fall back to keeps its name, unless a platform route has it. */
const inUse =
  '`route_in_use`: other tenant routes fall back to this one (their names are in `routes`), or agents call it as their model or degradation model (in `agents`); remove it from their fallbacks, or give the agents another model, first. A tenant route that shadows a platform route of the same name is not in use: the fallbacks and agents then go to the platform route.';

const createModelRoute = authedRoute({
  method: 'post',
  path: '/v1/model-routes',
  operationId: 'createModelRoute',
  tags: ['Model routes'],
  summary: 'Create a model route for your tenant (owners and admins)',
  request: { body: jsonBody(routeBody) },
  responses: { 201: jsonResponse(routeResponseSchema, 'The route.'), ...conflict },
});
const listModelRoutes = authedRoute({
  method: 'get',
  path: '/v1/model-routes',
  operationId: 'listModelRoutes',
  tags: ['Model routes'],
  summary:
    "Your tenant's routes, then the platform's (a tenant route shadows a platform route of the same name)",
  responses: {
    200: jsonResponse(z.object({ data: z.array(routeResponseSchema) }), 'Routes.'),
  },
});
const getModelRoute = authedRoute({
  method: 'get',
  path: '/v1/model-routes/{routeId}',
  operationId: 'getModelRoute',
  tags: ['Model routes'],
  summary: 'Get one of your tenant’s routes',
  request: { params },
  responses: { 200: jsonResponse(routeResponseSchema, 'The route.') },
});
const updateModelRoute = authedRoute({
  method: 'patch',
  path: '/v1/model-routes/{routeId}',
  operationId: 'updateModelRoute',
  tags: ['Model routes'],
  summary:
    'Change a route: the fields sent replace the stored ones, a field sent as null is removed (owners and admins)',
  request: { params, body: jsonBody(patchBody(modelRouteSchema.shape)) },
  responses: {
    200: jsonResponse(routeResponseSchema, 'The route.'),
    409: problemResponse(
      `A route with the new name exists already (\`conflict\`), or the route is renamed while in use: ${inUse}`,
    ),
  },
});
const deleteModelRoute = authedRoute({
  method: 'delete',
  path: '/v1/model-routes/{routeId}',
  operationId: 'deleteModelRoute',
  tags: ['Model routes'],
  summary:
    'Delete a route (owners and admins); agents naming it fail with unknown_model until it exists again',
  request: { params },
  responses: { 204: { description: 'Deleted.' }, 409: problemResponse(`Not deleted: ${inUse}`) },
});

function toResponse(route: ListedModelRoute) {
  const definition = route.definition as ModelRouteDefinition & z.infer<typeof modelRouteSchema>;
  if (route.scope === 'platform')
    return {
      ...definition,
      id: null,
      scope: 'platform' as const,
      version: null,
      createdAt: null,
      updatedAt: null,
    };
  return {
    ...definition,
    id: route.id,
    scope: 'tenant' as const,
    version: route.version,
    createdAt: route.createdAt.toISOString(),
    updatedAt: route.updatedAt.toISOString(),
  };
}

/** Registers the model route operations. */
export function registerModelRouteRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createModelRoute, async (context) => {
    const created = await services.modelRoutes.create(
      context.get('principal'),
      context.req.valid('json') as ModelRouteDefinition,
    );
    return context.json(toResponse({ ...created, scope: 'tenant' }), 201);
  });
  app.openapi(listModelRoutes, async (context) => {
    const routes = await services.modelRoutes.list(context.get('principal'));
    return context.json({ data: routes.map(toResponse) }, 200);
  });
  app.openapi(getModelRoute, async (context) => {
    const route = await services.modelRoutes.get(
      context.get('principal'),
      context.req.valid('param').routeId,
    );
    return context.json(toResponse({ ...route, scope: 'tenant' }), 200);
  });
  app.openapi(updateModelRoute, async (context) => {
    const principal = context.get('principal');
    const { routeId } = context.req.valid('param');
    const current = await services.modelRoutes.get(principal, routeId);
    const merged = await mergePatch(context, current.definition, modelRouteSchema);
    const updated = await services.modelRoutes.update(
      principal,
      routeId,
      merged as ModelRouteDefinition,
    );
    return context.json(toResponse({ ...updated, scope: 'tenant' }), 200);
  });
  app.openapi(deleteModelRoute, async (context) => {
    await services.modelRoutes.delete(context.get('principal'), context.req.valid('param').routeId);
    return context.body(null, 204);
  });
}
