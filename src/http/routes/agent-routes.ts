import { z } from '@hono/zod-openapi';
import {
  agentResponse,
  agentSchema,
  createAgentSchema,
  updateAgentSchema,
} from '../agent-schemas.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';
import { pageQuerySchema, pageSchema } from '../schemas.ts';

const params = z.object({ agentId: idParam('agentId') });
const nameTaken = {
  409: problemResponse(
    'The tenant has an agent of this name already, or `limits.perTenant.agents` agents (`resource_limit_exceeded`).',
  ),
};

const createAgent = authedRoute({
  method: 'post',
  path: '/v1/agents',
  operationId: 'createAgent',
  tags: ['Agents'],
  summary: 'Create an agent in your tenant (owners and admins)',
  request: { body: jsonBody(createAgentSchema) },
  responses: { 201: jsonResponse(agentSchema, 'The agent.'), ...nameTaken },
});
const listAgents = authedRoute({
  method: 'get',
  path: '/v1/agents',
  operationId: 'listAgents',
  tags: ['Agents'],
  summary: "List your tenant's agents",
  request: { query: pageQuerySchema },
  responses: { 200: jsonResponse(pageSchema(agentSchema, 'AgentPage'), 'A page of agents.') },
});
const getAgent = authedRoute({
  method: 'get',
  path: '/v1/agents/{agentId}',
  operationId: 'getAgent',
  tags: ['Agents'],
  summary: 'Get an agent',
  request: { params },
  responses: { 200: jsonResponse(agentSchema, 'The agent.') },
});
const updateAgent = authedRoute({
  method: 'patch',
  path: '/v1/agents/{agentId}',
  operationId: 'updateAgent',
  tags: ['Agents'],
  summary: 'Change an agent (owners and admins)',
  request: { params, body: jsonBody(updateAgentSchema) },
  responses: { 200: jsonResponse(agentSchema, 'The agent.'), ...nameTaken },
});
const deleteAgent = authedRoute({
  method: 'delete',
  path: '/v1/agents/{agentId}',
  operationId: 'deleteAgent',
  tags: ['Agents'],
  summary: 'Delete an agent (owners and admins); its past runs stay',
  request: { params },
  responses: { 204: { description: 'Deleted.' } },
});

/** Registers the agent operations. */
export function registerAgentRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createAgent, async (context) => {
    const agent = await services.agents.create(context.get('principal'), context.req.valid('json'));
    return context.json(agentResponse(agent), 201);
  });
  app.openapi(listAgents, async (context) => {
    const page = await services.agents.list(context.get('principal'), context.req.valid('query'));
    return context.json({ data: page.data.map(agentResponse), nextCursor: page.nextCursor }, 200);
  });
  app.openapi(getAgent, async (context) => {
    const agent = await services.agents.get(
      context.get('principal'),
      context.req.valid('param').agentId,
    );
    return context.json(agentResponse(agent), 200);
  });
  app.openapi(updateAgent, async (context) => {
    const body = context.req.valid('json');
    const patch = Object.fromEntries(
      Object.entries(body).filter(([, value]) => value !== undefined),
    );
    const agent = await services.agents.update(
      context.get('principal'),
      context.req.valid('param').agentId,
      patch,
    );
    return context.json(agentResponse(agent), 200);
  });
  app.openapi(deleteAgent, async (context) => {
    await services.agents.delete(context.get('principal'), context.req.valid('param').agentId);
    return context.body(null, 204);
  });
}
