import { sql } from 'kysely';
import type { AuditRecord } from '../../domain/identity/identity-types.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { ScopedDb } from '../postgres/database.ts';

/** An audit event's columns that the writer sets (the chain trigger assigns the rest). */
export function auditColumns(event: {
  readonly principal: Principal | undefined;
  readonly record: AuditRecord;
}) {
  const { principal, record } = event;
  return {
    actor_kind: principal === undefined ? ('system' as const) : principal.kind,
    actor_user_id: principal?.kind === 'user' ? principal.userId : null,
    actor_key_id: principal?.kind === 'user' ? (principal.keyId ?? null) : null,
    action: record.action,
    target_type: record.targetType,
    target_id: record.targetId,
    outcome: record.outcome,
    reason: record.reason ?? null,
    data: JSON.stringify(record.data ?? {}),
  };
}

/**
 * Appends one audit event inside the caller's transaction. The trigger assigns the sequence
 * number and hash chain; the current scope must be `tenantId`, which this call ensures.
 */
export async function writeAudit(
  db: ScopedDb,
  event: {
    readonly tenantId: string;
    readonly principal: Principal | undefined;
    readonly record: AuditRecord;
  },
): Promise<void> {
  const { tenantId } = event;
  await sql`select set_config('brigade.tenant_id', ${tenantId}, true)`.execute(db);
  await db
    .insertInto('brigade.audit_events')
    .values({ tenant_id: tenantId, ...auditColumns(event) })
    .execute();
}

/**
 * Appends the same audit event to the chain of every tenant (migration 0031), inside the
 * caller's transaction, which must be the operator's: for platform-wide changes, such as a
 * platform policy, that bind every tenant.
 */
export async function writeAuditToEveryTenant(
  db: ScopedDb,
  event: { readonly principal: Principal | undefined; readonly record: AuditRecord },
): Promise<void> {
  const columns = auditColumns(event);
  const payload = { ...columns, data: JSON.parse(columns.data) as unknown };
  await sql`select brigade.audit_in_every_tenant(${JSON.stringify(payload)}::jsonb)`.execute(db);
}

/**
 * What an update audit event records of the values it changed: `{field: {from, to}}` for each
 * of `recorded` that the patch sets. Only settings and enumerations belong in `recorded`
 * (status, role, a flag, a time zone): never a secret, free text or metadata, which the
 * event names in `fields` without their values.
 */
export function auditedChanges<T extends object>(options: {
  readonly before: T;
  readonly patch: Partial<T>;
  readonly recorded: readonly (keyof T & string)[];
}): Record<string, { from: unknown; to: unknown }> {
  const changes: Record<string, { from: unknown; to: unknown }> = {};
  for (const field of options.recorded) {
    const to = options.patch[field];
    if (to !== undefined) changes[field] = { from: options.before[field], to };
  }
  return changes;
}
