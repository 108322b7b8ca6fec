import { asTenantUser } from '../domain/agents/agent-service.ts';
import { ConflictError, NotFoundError, ValidationError } from '../domain/errors.ts';
import { assertCan, type Principal, type UserPrincipal } from '../domain/identity/principal.ts';
import type { ModelGateway } from '../gateway/model-gateway.ts';
import type { ModelRouteDefinition } from '../gateway/model-routes.ts';
import { routeProblems } from '../gateway/route-schema.ts';
import type { ModelRouteStore, StoredModelRoute } from '../storage/routes/model-route-store.ts';

/** A route as listings show it: a tenant's own, or a platform route from the config file. */
export type ListedModelRoute =
  | (StoredModelRoute & { readonly scope: 'tenant' })
  | { readonly scope: 'platform'; readonly definition: ModelRouteDefinition };

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function routeNotFound(): NotFoundError {
  return new NotFoundError('model_route_not_found', 'Model route not found.');
}

/**
 * Tenant model routes: admins manage them, every member reads them (they need the names).
 * A definition is checked before it is saved: every deployment names `local` or a configured
 * provider, every fallback names an existing route, and the timing settings are consistent.
 * The store checks the fallbacks again as it writes, and keeps a route that other routes fall
 * back to from being deleted or renamed (409 `route_in_use`).
 */
export function createModelRouteService(options: {
  readonly store: ModelRouteStore;
  readonly gateway: ModelGateway;
  readonly platformRoutes: readonly ModelRouteDefinition[];
  /** Told after each change, to drop the gateway's cache of the tenant's routes. */
  readonly onChange: (tenantId: string) => void;
}) {
  const { store, gateway } = options;

  async function check(
    definition: ModelRouteDefinition,
    user: UserPrincipal,
    selfId?: string,
  ): Promise<void> {
    // Paths name the request body's fields, as the schema's own issues do (`body.name`).
    const issues = routeProblems(definition).map((issue) => ({
      ...issue,
      path: `body.${issue.path}`,
    }));
    definition.deployments.forEach((deployment, index) => {
      // Prices and context windows decide what budgets reserve: only the operator (platform
      // routes in the config file) may set them, or a tenant could price its calls at zero.
      if (deployment.price !== undefined)
        issues.push({
          path: `body.deployments.${index}.price`,
          message: 'Prices are set by the platform operator, not on tenant routes.',
        });
      if (deployment.contextTokens !== undefined)
        issues.push({
          path: `body.deployments.${index}.contextTokens`,
          message: 'Context windows are set by the platform operator, not on tenant routes.',
        });
      if (!gateway.knows(deployment.model))
        issues.push({
          path: `body.deployments.${index}.model`,
          message: `No provider for '${deployment.model}'. Available: ${gateway.describe().join(', ')}.`,
        });
    });
    // The tenant's routes as stored (not the gateway's cache of them); the store checks the
    // fallbacks again under lock, as it writes, against a concurrent delete or rename.
    const others = (await store.list(user)).filter((route) => route.id !== selfId);
    const names = new Set([
      ...others.map((route) => route.definition.name),
      ...options.platformRoutes.map((route) => route.name),
    ]);
    definition.fallbacks.forEach((fallback, index) => {
      // A fallback to the route itself has its own issue (routeProblems), not a second one.
      if (fallback.route !== definition.name && !names.has(fallback.route))
        issues.push({
          path: `body.fallbacks.${index}.route`,
          message: `No route named '${fallback.route}'.`,
        });
    });
    if (issues.length > 0) throw new ValidationError(issues);
    if (others.some((route) => route.definition.name === definition.name))
      throw new ConflictError(`A model route named '${definition.name}' exists already.`);
  }

  async function listed(user: UserPrincipal): Promise<ListedModelRoute[]> {
    const own = await store.list(user);
    return [
      ...own.map((route) => ({ ...route, scope: 'tenant' as const })),
      ...options.platformRoutes.map((definition) => ({ scope: 'platform' as const, definition })),
    ];
  }

  async function load(principal: Principal, routeId: string) {
    const user = asTenantUser(principal);
    assertCan(user, 'agent:read');
    if (!uuidPattern.test(routeId)) throw routeNotFound();
    const route = await store.get(user, routeId);
    if (route === undefined) throw routeNotFound();
    return { user, route };
  }

  return {
    async create(principal: Principal, definition: ModelRouteDefinition) {
      const user = asTenantUser(principal);
      assertCan(user, 'route:manage');
      await check(definition, user);
      const created = await store.create(user, definition);
      options.onChange(user.tenantId);
      return created;
    },
    async list(principal: Principal): Promise<ListedModelRoute[]> {
      const user = asTenantUser(principal);
      assertCan(user, 'agent:read');
      return listed(user);
    },
    /**
     * The routes as a caller of models sees them (the models API): what `list` answers, for a
     * key that may call models (`thread:write`) whether or not it may read agents.
     */
    async listCallable(principal: Principal): Promise<ListedModelRoute[]> {
      const user = asTenantUser(principal);
      assertCan(user, 'thread:write');
      return listed(user);
    },
    async get(principal: Principal, routeId: string) {
      return (await load(principal, routeId)).route;
    },
    async update(principal: Principal, routeId: string, definition: ModelRouteDefinition) {
      const { user } = await load(principal, routeId);
      assertCan(user, 'route:manage');
      await check(definition, user, routeId);
      const updated = await store.update(user, routeId, definition);
      if (updated === undefined) throw routeNotFound();
      options.onChange(user.tenantId);
      return updated;
    },
    async delete(principal: Principal, routeId: string) {
      const { user } = await load(principal, routeId);
      assertCan(user, 'route:manage');
      if (!(await store.delete(user, routeId))) throw routeNotFound();
      options.onChange(user.tenantId);
    },
  };
}

/** The model route service's type. */
export type ModelRouteService = ReturnType<typeof createModelRouteService>;
