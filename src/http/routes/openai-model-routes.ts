import { createRoute, z } from '@hono/zod-openapi';
import { asTenantUser } from '../../domain/agents/agent-service.ts';
import type { Agent } from '../../domain/agents/agent-types.ts';
import { AppError } from '../../domain/errors.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { agentName, findAgentByName } from '../openai/agent-completion.ts';
import { modelAccess } from '../openai/model-access.ts';
import { openAiErrors } from '../openai/openai-error-responses.ts';
import { modelListSchema, modelSchema } from '../openai/openai-schemas.ts';
import { jsonResponse } from '../route-helpers.ts';

/** One entry of the models API. */
type ModelEntry = z.infer<typeof modelSchema>;

/** A model route as the route service lists it: a tenant's own, or a platform route. */
type ListedRoute = Awaited<ReturnType<RouteServices['modelRoutes']['list']>>[number];

const readErrors = {
  401: openAiErrors[401],
  403: openAiErrors[403],
  429: openAiErrors[429],
  500: openAiErrors[500],
  503: openAiErrors[503],
} as const;

const listModels = createRoute({
  method: 'get',
  path: '/v1/models',
  operationId: 'listModels',
  tags: ['OpenAI-compatible'],
  summary:
    'Models this key may call: `local`, the tenant’s agents as `agent:<name>`, and the model routes (the tenant’s own and the platform’s); none for a key that may not call models',
  description:
    'Lists only what `createChatCompletion` accepts from this key: `local` and the routes need `thread:write`, `agent:<name>` also `agent:read` and `thread:read`. A key without `thread:write` (a viewer’s, or one scoped to `agent:read`) gets an empty list.',
  security: [{ bearerAuth: [] }],
  responses: { 200: jsonResponse(modelListSchema, 'The models.'), ...readErrors },
});

const retrieveModel = createRoute({
  method: 'get',
  path: '/v1/models/{model}',
  operationId: 'retrieveModel',
  tags: ['OpenAI-compatible'],
  summary:
    'One model this key may call, as `listModels` shows it; a configured provider’s `<provider>:<model id>` too',
  description:
    'A model this key may not call (every model for a key without `thread:write`, agents for one without `agent:read` and `thread:read`) is `404 model_not_found`, like a name that exists nowhere.',
  security: [{ bearerAuth: [] }],
  request: {
    params: z.object({
      model: z.string().openapi({
        description:
          'The model id, URL-encoded (`agent:helper`, `vllm:meta-llama%2FLlama-3-8B`); a slash may also be sent as it is.',
      }),
    }),
  },
  responses: {
    200: jsonResponse(modelSchema, 'The model.'),
    ...readErrors,
    404: openAiErrors[404],
  },
});

const localEntry: ModelEntry = { id: 'local', object: 'model', created: 0, owned_by: 'brigade' };

function agentEntry(agent: Agent): ModelEntry {
  return {
    id: `agent:${agent.name}`,
    object: 'model',
    created: Math.floor(agent.createdAt.getTime() / 1000),
    owned_by: 'tenant',
  };
}

function routeEntry(route: ListedRoute): ModelEntry {
  return {
    id: route.definition.name,
    object: 'model',
    created: route.scope === 'tenant' ? Math.floor(route.createdAt.getTime() / 1000) : 0,
    owned_by: route.scope === 'tenant' ? 'tenant' : 'platform',
  };
}

/**
 * The model `id` names for this key, under the rules of `listModels` (`local`, its tenant's
 * agents, the model routes it can call, a tenant route before the platform route it shadows),
 * and a configured provider's `<provider>:<model id>`, which a completion accepts but a listing
 * cannot enumerate. Anything else — another tenant's agent or route included — is
 * `unknown_model` (404 `model_not_found`), exactly like a name that exists nowhere.
 */
async function findModel(
  services: RouteServices,
  principal: Principal,
  id: string,
): Promise<ModelEntry> {
  const user = asTenantUser(principal);
  const access = modelAccess(user);
  const unknown = new AppError('unknown_model', `The model '${id}' does not exist.`);
  // A model this key may not call is not one of its models: 404, as for a name nowhere.
  if (!access.models) throw unknown;
  if (id === 'local') return localEntry;
  const name = agentName(id);
  if (name !== undefined) {
    if (!access.agents) throw unknown;
    return agentEntry(await findAgentByName(services, principal, name));
  }
  const route = (await services.modelRoutes.listCallable(principal)).find(
    (candidate) => candidate.definition.name === id,
  );
  if (route !== undefined) return routeEntry(route);
  if (await services.chat.knows(id, user.tenantId))
    return { id, object: 'model', created: 0, owned_by: 'platform' };
  throw unknown;
}

/** Registers `listModels` and `retrieveModel`. */
export function registerOpenAiModelRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(listModels, async (context) => {
    const principal = context.get('principal');
    const access = modelAccess(asTenantUser(principal));
    // Only what this key may call: nothing at all for a key that may not call models.
    if (!access.models) return context.json({ object: 'list' as const, data: [] }, 200);
    const data: ModelEntry[] = [localEntry];
    let after: string | undefined;
    while (access.agents) {
      const page = await services.agents.list(principal, { limit: 100, after });
      data.push(...page.data.map(agentEntry));
      if (page.nextCursor === null) break;
      after = page.nextCursor;
    }
    // Model routes by name: the tenant's own, then the platform's it does not shadow.
    const named = new Set<string>();
    for (const route of await services.modelRoutes.listCallable(principal)) {
      if (named.has(route.definition.name)) continue;
      named.add(route.definition.name);
      data.push(routeEntry(route));
    }
    return context.json({ object: 'list' as const, data }, 200);
  });

  // The document declares `{model}` as one segment; the route takes the rest of the path, so a
  // provider model id with a slash (`vllm:meta-llama/Llama-3-8B`) is found whether the client
  // encodes it (`%2F`, as the official openai client does) or not.
  app.openAPIRegistry.registerPath(retrieveModel);
  app.get('/v1/models/:model{.+}', async (context) =>
    context.json(
      await findModel(services, context.get('principal'), context.req.param('model')),
      200,
    ),
  );
}
