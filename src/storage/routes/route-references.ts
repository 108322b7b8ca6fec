import { sql } from 'kysely';
import { AppError, ValidationError } from '../../domain/errors.ts';
import type { ModelRouteDefinition } from '../../gateway/model-routes.ts';
import type { ScopedDb } from '../postgres/database.ts';

/**
 * Locks the tenant route `routeId` (when given) and the tenant routes `definition` falls back
 * to, in one statement in id order (so two edits never wait on each other in a circle), and
 * refuses (422 on `body.fallbacks.N.route`) a fallback that names neither a tenant route nor a
 * platform route. Call it inside the writing transaction: a deletion or rename of a fallback's
 * route takes the same row lock, so of the two only one commits, and the other sees its result
 * (a deleted or renamed route no longer matches its name here; a new reference is seen by the
 * deletion's check, {@link assertNotFallback}). Returns the locked route's current name.
 */
export async function lockFallbackTargets(
  db: ScopedDb,
  definition: ModelRouteDefinition,
  options: { readonly routeId?: string; readonly platformNames: ReadonlySet<string> },
): Promise<{ readonly currentName: string | undefined }> {
  const targets = [...new Set(definition.fallbacks.map((fallback) => fallback.route))];
  const { routeId } = options;
  const self = routeId === undefined ? sql`false` : sql`id = ${routeId}::uuid`;
  const rows =
    targets.length === 0 && routeId === undefined
      ? []
      : (
          await sql<{ id: string; name: string }>`
            select id, name from brigade.model_routes
             where ${self} or name = any(${targets}::text[])
             order by id for update`.execute(db)
        ).rows;
  const tenantNames = new Set(rows.filter((row) => row.id !== routeId).map((row) => row.name));
  const issues = definition.fallbacks.flatMap((fallback, index) =>
    fallback.route === definition.name ||
    tenantNames.has(fallback.route) ||
    options.platformNames.has(fallback.route)
      ? []
      : [{ path: `body.fallbacks.${index}.route`, message: `No route named '${fallback.route}'.` }],
  );
  if (issues.length > 0) throw new ValidationError(issues);
  return { currentName: rows.find((row) => row.id === routeId)?.name };
}

/**
 * Refuses (409 `route_in_use`, naming them) to let the tenant route `name` go — deleted, or
 * renamed — while other tenant routes fall back to it or agents of the tenant call it (their
 * `model` or degradation model), unless a platform route of that name takes over (the
 * fallbacks and agents then go to the platform route). Call it in the transaction that deletes
 * or renames the route, after that statement: it has locked the row, so a fallback committed
 * meanwhile is seen, and one being added waits for this transaction's end. (An agent's model is
 * checked when the agent is written, without that lock: an agent saved on the route while it is
 * deleted fails its runs with `unknown_model`.)
 */
export async function assertNotFallback(
  db: ScopedDb,
  route: { readonly id: string; readonly name: string },
  platformNames: ReadonlySet<string>,
): Promise<void> {
  if (platformNames.has(route.name)) return;
  const referencing = await sql<{ kind: 'route' | 'agent'; name: string }>`
    select 'route' as kind, name from brigade.model_routes
     where id <> ${route.id}::uuid
       and definition -> 'fallbacks' @> ${JSON.stringify([{ route: route.name }])}::jsonb
    union all
    select 'agent', name from brigade.agents
     where model = ${route.name} or degrade_model = ${route.name}
     order by 1 desc, 2`.execute(db);
  const names = (kind: string) =>
    referencing.rows.filter((row) => row.kind === kind).map((row) => row.name);
  const routes = names('route');
  const agents = names('agent');
  if (routes.length === 0 && agents.length === 0) return;
  const quoted = (list: readonly string[]) => list.map((name) => `'${name}'`).join(', ');
  const uses = [
    ...(routes.length === 0 ? [] : [`a fallback of ${quoted(routes)}`]),
    ...(agents.length === 0 ? [] : [`the model of agent(s) ${quoted(agents)}`]),
  ];
  throw new AppError(
    'route_in_use',
    `The route '${route.name}' is ${uses.join(' and ')}: remove it from their ${routes.length === 0 ? 'definitions' : agents.length === 0 ? 'fallbacks' : 'fallbacks and definitions'} first.`,
    { details: { routes, agents } },
  );
}
