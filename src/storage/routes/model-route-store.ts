import type { Selectable } from 'kysely';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import type { ModelRouteDefinition } from '../../gateway/model-routes.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import type { Database } from '../postgres/database.ts';
import type { ModelRoutesTable } from '../postgres/database-schema.ts';
import { assertCapacity, type TenantCapacity } from '../postgres/tenant-capacity.ts';
import { assertNotFallback, lockFallbackTargets } from './route-references.ts';

/** A tenant's stored model route. */
export interface StoredModelRoute {
  readonly id: string;
  readonly tenantId: string;
  readonly definition: ModelRouteDefinition;
  readonly version: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

function toRoute(row: Selectable<ModelRoutesTable>): StoredModelRoute {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    definition: { ...(row.definition as ModelRouteDefinition), name: row.name },
    version: row.version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * Tenant model routes in PostgreSQL (RLS: the tenant reads, its admins write). Every write
 * keeps the tenant's fallbacks whole in its own transaction: a route is saved only when each of
 * its fallbacks names a route (422), and a route other routes fall back to is neither deleted
 * nor renamed (409 `route_in_use`) unless a platform route of its name takes over.
 * `platformRoutes` are the config file's: a fallback may name one, and one is never in use.
 */
export function createModelRouteStore(
  database: Database,
  capacity?: TenantCapacity,
  platformRoutes: readonly { readonly name: string }[] = [],
) {
  const platformNames = new Set(platformRoutes.map((route) => route.name));
  return {
    create(principal: UserPrincipal, definition: ModelRouteDefinition): Promise<StoredModelRoute> {
      return database.withScope(scopeFor(principal), async (db) => {
        if (capacity !== undefined)
          await assertCapacity(db, {
            resource: 'modelRoutes',
            tenantId: principal.tenantId,
            max: capacity.modelRoutes,
          });
        await lockFallbackTargets(db, definition, { platformNames });
        const now = new Date();
        const row = await db
          .insertInto('brigade.model_routes')
          .values({
            tenant_id: principal.tenantId,
            name: definition.name,
            definition: JSON.stringify(definition),
            created_by_user_id: principal.userId,
            created_at: now,
            updated_at: now,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'model_route.created',
            targetType: 'model_route',
            targetId: row.id,
            outcome: 'success',
            data: { name: definition.name },
          },
        });
        return toRoute(row);
      });
    },
    list(principal: UserPrincipal): Promise<StoredModelRoute[]> {
      return database.withScope(scopeFor(principal), async (db) => {
        const rows = await db
          .selectFrom('brigade.model_routes')
          .selectAll()
          .orderBy('name')
          .execute();
        return rows.map(toRoute);
      });
    },
    get(principal: UserPrincipal, routeId: string): Promise<StoredModelRoute | undefined> {
      return database.withScope(scopeFor(principal), async (db) => {
        const row = await db
          .selectFrom('brigade.model_routes')
          .selectAll()
          .where('id', '=', routeId)
          .executeTakeFirst();
        return row === undefined ? undefined : toRoute(row);
      });
    },
    update(
      principal: UserPrincipal,
      routeId: string,
      definition: ModelRouteDefinition,
    ): Promise<StoredModelRoute | undefined> {
      return database.withScope(scopeFor(principal), async (db) => {
        const { currentName } = await lockFallbackTargets(db, definition, {
          routeId,
          platformNames,
        });
        if (currentName === undefined) return undefined;
        const row = await db
          .updateTable('brigade.model_routes')
          .set((eb) => ({
            name: definition.name,
            definition: JSON.stringify(definition),
            version: eb('version', '+', 1),
            updated_at: new Date(),
          }))
          .where('id', '=', routeId)
          .returningAll()
          .executeTakeFirst();
        if (row === undefined) return undefined;
        if (currentName !== definition.name)
          await assertNotFallback(db, { id: routeId, name: currentName }, platformNames);
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'model_route.updated',
            targetType: 'model_route',
            targetId: row.id,
            outcome: 'success',
            data: { name: definition.name, version: row.version },
          },
        });
        return toRoute(row);
      });
    },
    delete(principal: UserPrincipal, routeId: string): Promise<boolean> {
      return database.withScope(scopeFor(principal), async (db) => {
        const deleted = await db
          .deleteFrom('brigade.model_routes')
          .where('id', '=', routeId)
          .returning('name')
          .executeTakeFirst();
        if (deleted === undefined) return false;
        await assertNotFallback(db, { id: routeId, name: deleted.name }, platformNames);
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'model_route.deleted',
            targetType: 'model_route',
            targetId: routeId,
            outcome: 'success',
            data: { name: deleted.name },
          },
        });
        return true;
      });
    },
  };
}

/** The model route store's type. */
export type ModelRouteStore = ReturnType<typeof createModelRouteStore>;

/** A tenant's routes as the gateway reads them (system scope of the tenant). */
export async function loadTenantRoutes(
  database: Database,
  tenantId: string,
): Promise<ModelRouteDefinition[]> {
  return database.withScope({ tenantId }, async (db) => {
    const rows = await db.selectFrom('brigade.model_routes').selectAll().execute();
    return rows.map((row) => toRoute(row).definition);
  });
}
