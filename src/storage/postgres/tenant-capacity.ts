import { sql } from 'kysely';
import { AppError } from '../../domain/errors.ts';
import type { ScopedDb } from './database.ts';

/**
 * The objects a tenant's admins create whose number per tenant (or per user, for API keys) is
 * capped by `limits.perTenant`, with the table and the rows that count.
 */
const counted = {
  agents: { table: 'agents', noun: 'agents', where: sql`true` },
  tools: { table: 'tools', noun: 'tools', where: sql`true` },
  mcpServers: { table: 'mcp_servers', noun: 'MCP servers', where: sql`true` },
  modelRoutes: { table: 'model_routes', noun: 'model routes', where: sql`true` },
  // The operator's policies on a tenant are not the tenant's to fill: only the admins' count.
  policies: { table: 'policies', noun: 'policies', where: sql`managed_by = 'tenant'` },
  apiKeysPerUser: {
    table: 'api_keys',
    noun: 'active API keys',
    // A rotated key in its grace period still works: it counts until its revocation time.
    where: sql`(revoked_at is null or revoked_at > now()) and (expires_at is null or expires_at > now())`,
  },
} as const;

/** A capped kind of object (the key of its limit in `limits.perTenant`). */
export type CappedResource = keyof typeof counted;

/** The most objects of each capped kind a tenant (for API keys: a user) may have. */
export type TenantCapacity = Readonly<Record<CappedResource, number>>;

/** What {@link assertCapacity} checks: `adding` more objects of `resource` under `max`. */
export interface CapacityCheck {
  readonly resource: CappedResource;
  readonly tenantId: string;
  /** For `apiKeysPerUser`: whose keys count. */
  readonly userId?: string;
  readonly max: number;
  /** How many objects the caller is about to create (an OpenAPI import creates several). */
  readonly adding?: number;
  /** An object not to count (a key being replaced by its successor at once). */
  readonly exceptId?: string;
}

/**
 * Refuses (409 `resource_limit_exceeded`) when the tenant (or user) would have more than `max`
 * objects of `resource` after `adding` more. Call it inside the creating transaction: creations
 * of the same kind in the same tenant take turns on an advisory lock until their commit, so two
 * at once cannot both pass a count that has room for one.
 */
export async function assertCapacity(db: ScopedDb, check: CapacityCheck): Promise<void> {
  const { table, noun, where } = counted[check.resource];
  const owner = check.userId ?? check.tenantId;
  await sql`select pg_advisory_xact_lock(hashtext(${`brigade.capacity.${table}`}), hashtext(${owner}))`.execute(
    db,
  );
  const byUser = check.userId === undefined ? sql`true` : sql`user_id = ${check.userId}::uuid`;
  const except = check.exceptId === undefined ? sql`true` : sql`id <> ${check.exceptId}::uuid`;
  const result = await sql<{ count: string }>`
    select count(*) as count from ${sql.table(`brigade.${table}`)}
     where tenant_id = ${check.tenantId}::uuid and ${byUser} and ${except} and ${where}`.execute(
    db,
  );
  const count = Number(result.rows[0]?.count ?? 0);
  const adding = check.adding ?? 1;
  if (count + adding <= check.max) return;
  const holder = check.userId === undefined ? 'The tenant' : 'The user';
  throw new AppError(
    'resource_limit_exceeded',
    `${holder} has ${count} ${noun}; ${adding === 1 ? 'one more' : `${adding} more`} would pass the limit of ${check.max}. Delete some first, or ask the operator to raise limits.perTenant.${check.resource}.`,
    { details: { resource: check.resource, limit: check.max, current: count } },
  );
}
