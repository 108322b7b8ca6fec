import { z } from '@hono/zod-openapi';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';
import {
  createUserSchema,
  pageQuerySchema,
  pageSchema,
  updateUserSchema,
  userResponse,
  userSchema,
} from '../schemas.ts';

const tenantParams = z.object({ tenantId: idParam('tenantId') });
const userParams = tenantParams.extend({ userId: idParam('userId') });

const createUser = authedRoute({
  method: 'post',
  path: '/v1/tenants/{tenantId}/users',
  operationId: 'createUser',
  tags: ['Users'],
  summary: 'Add a user to a tenant with a role (owners and admins; only owners add owners)',
  request: { params: tenantParams, body: jsonBody(createUserSchema) },
  responses: {
    201: jsonResponse(userSchema, 'The user.'),
    409: problemResponse('A user of the tenant has this e-mail address already.'),
  },
});

const listUsers = authedRoute({
  method: 'get',
  path: '/v1/tenants/{tenantId}/users',
  operationId: 'listUsers',
  tags: ['Users'],
  summary: 'List the users of a tenant (owners and admins)',
  request: { params: tenantParams, query: pageQuerySchema },
  responses: { 200: jsonResponse(pageSchema(userSchema, 'UserPage'), 'A page of users.') },
});

const getUser = authedRoute({
  method: 'get',
  path: '/v1/tenants/{tenantId}/users/{userId}',
  operationId: 'getUser',
  tags: ['Users'],
  summary: 'Get a user (yourself, or anyone for owners and admins)',
  request: { params: userParams },
  responses: { 200: jsonResponse(userSchema, 'The user.') },
});

const updateUser = authedRoute({
  method: 'patch',
  path: '/v1/tenants/{tenantId}/users/{userId}',
  operationId: 'updateUser',
  tags: ['Users'],
  summary: 'Update a user: profile (yourself), role or status (owners and admins)',
  request: { params: userParams, body: jsonBody(updateUserSchema) },
  responses: {
    200: jsonResponse(userSchema, 'The updated user.'),
    409: problemResponse(
      'The e-mail address is taken, or the change would leave the tenant without an active owner.',
    ),
  },
});

/** Registers the user and membership operations. */
export function registerUserRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createUser, async (context) => {
    const user = await services.identity.createUser(
      context.get('principal'),
      context.req.valid('param').tenantId,
      context.req.valid('json'),
    );
    return context.json(userResponse(user), 201);
  });
  app.openapi(listUsers, async (context) => {
    const page = await services.identity.listUsers(
      context.get('principal'),
      context.req.valid('param').tenantId,
      context.req.valid('query'),
    );
    return context.json({ data: page.data.map(userResponse), nextCursor: page.nextCursor }, 200);
  });
  app.openapi(getUser, async (context) => {
    const { tenantId, userId } = context.req.valid('param');
    const user = await services.identity.getUser(context.get('principal'), tenantId, userId);
    return context.json(userResponse(user), 200);
  });
  app.openapi(updateUser, async (context) => {
    const body = context.req.valid('json');
    const patch = Object.fromEntries(
      Object.entries(body).filter(([, value]) => value !== undefined),
    );
    const user = await services.identity.updateUser(
      context.get('principal'),
      context.req.valid('param'),
      patch,
    );
    return context.json(userResponse(user), 200);
  });
}
