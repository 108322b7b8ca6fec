import { type Selectable, sql } from 'kysely';
import type { PolicyStore } from '../../domain/guards/policy-service.ts';
import {
  type CounterState,
  type EffectiveLimit,
  type MyLimits,
  nanosToUsd,
  numericLimitKinds,
  type Policy,
  type PolicyLimits,
  usdToNanos,
} from '../../domain/guards/policy-types.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import { writeAudit, writeAuditToEveryTenant } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import { retryingConflicts } from '../postgres/conflict-retry.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import type { PoliciesTable } from '../postgres/database-schema.ts';
import { assertCapacity, type TenantCapacity } from '../postgres/tenant-capacity.ts';

/** Limits as stored: the budget in integer nano-USD, so PostgreSQL compares integers. */
interface StoredLimits extends Omit<PolicyLimits, 'budget'> {
  readonly budget?: { amountNanos: number; period: string; windowHours?: number };
}

function toStored(limits: PolicyLimits): StoredLimits {
  const { budget, ...rest } = limits;
  const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  if (budget === undefined) return defined;
  return {
    ...defined,
    budget: {
      amountNanos: usdToNanos(budget.amountUsd),
      period: budget.period,
      ...(budget.windowHours === undefined ? {} : { windowHours: budget.windowHours }),
    },
  };
}

function fromStored(stored: StoredLimits): PolicyLimits {
  const { budget, ...rest } = stored;
  if (budget === undefined) return rest;
  return {
    ...rest,
    budget: {
      amountUsd: nanosToUsd(budget.amountNanos),
      period: budget.period as NonNullable<PolicyLimits['budget']>['period'],
      ...(budget.windowHours === undefined ? {} : { windowHours: budget.windowHours }),
    },
  };
}

/** Maps a policies row. */
export function toPolicy(row: Selectable<PoliciesTable>): Policy {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    level: row.level,
    role: row.role,
    subjectId: row.subject_id,
    name: row.name,
    limits: fromStored(row.limits as StoredLimits),
    managedBy: row.managed_by,
    version: row.version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

async function audit(
  db: ScopedDb,
  event: { principal: Principal; policy: Policy; action: string; data: Record<string, unknown> },
): Promise<void> {
  const { principal, policy, action, data } = event;
  const record = {
    action,
    targetType: 'policy',
    targetId: policy.id,
    outcome: 'success' as const,
    data: { level: policy.level, version: policy.version, ...data },
  };
  // A platform policy binds every tenant: its change goes into every tenant's chain.
  if (policy.tenantId === null) await writeAuditToEveryTenant(db, { principal, record });
  else await writeAudit(db, { tenantId: policy.tenantId, principal, record });
}

interface CounterRow {
  id: string;
  level: Policy['level'];
  subject_id: string | null;
  counter_kind: 'budget' | 'runs' | 'tool_calls';
  period: string;
  limit_value: string;
  used: string;
  reserved: string;
  period_start: Date | null;
  resets_at: Date | null;
}

/** The PostgreSQL {@link PolicyStore}. */
export function createPolicyStore(database: Database, capacity?: TenantCapacity): PolicyStore {
  const scope = (principal: Principal, tenantId?: string | null) =>
    scopeFor(principal, tenantId ?? undefined);
  return {
    create(principal, input) {
      return database.withScope(scope(principal, input.tenantId), async (db) => {
        if (capacity !== undefined && input.tenantId !== null && input.managedBy === 'tenant')
          await assertCapacity(db, {
            resource: 'policies',
            tenantId: input.tenantId,
            max: capacity.policies,
          });
        const now = new Date();
        const row = await db
          .insertInto('brigade.policies')
          .values({
            tenant_id: input.tenantId,
            level: input.level,
            role: input.role ?? null,
            subject_id: input.subjectId ?? null,
            name: input.name ?? null,
            limits: JSON.stringify(toStored(input.limits)),
            managed_by: input.managedBy,
            created_by_user_id: principal.kind === 'user' ? principal.userId : null,
            created_at: now,
            updated_at: now,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        const policy = toPolicy(row);
        await audit(db, {
          principal,
          policy,
          action: 'policy.created',
          data: { limits: input.limits },
        });
        return policy;
      });
    },
    list(principal, tenantId) {
      return database.withScope(scope(principal, tenantId), async (db) => {
        const rows = await db
          .selectFrom('brigade.policies')
          .selectAll()
          .where((eb) =>
            tenantId === null
              ? eb('tenant_id', 'is', null)
              : eb.or([eb('tenant_id', 'is', null), eb('tenant_id', '=', tenantId)]),
          )
          .orderBy('created_at')
          .orderBy('id')
          .execute();
        return rows.map(toPolicy);
      });
    },
    get(principal, policyId) {
      return database.withScope(scope(principal), async (db) => {
        const row = await db
          .selectFrom('brigade.policies')
          .selectAll()
          .where('id', '=', policyId)
          .executeTakeFirst();
        return row === undefined ? undefined : toPolicy(row);
      });
    },
    update(principal, policy, patch) {
      // A period change's carry can deadlock with a batch of budget calls (see
      // retryingConflicts); the loser of the two is made again.
      return retryingConflicts(() =>
        database.withScope(scope(principal, policy.tenantId), async (db) => {
          // Read again, locked: the period a concurrent change left is the one to carry from.
          const before = await db
            .selectFrom('brigade.policies')
            .select('limits')
            .where('id', '=', policy.id)
            .forNoKeyUpdate()
            .executeTakeFirst();
          const row = await db
            .updateTable('brigade.policies')
            .set((eb) => ({
              ...(patch.name === undefined ? {} : { name: patch.name }),
              ...(patch.limits === undefined
                ? {}
                : { limits: JSON.stringify(toStored(patch.limits)) }),
              version: eb('version', '+', 1),
              updated_at: new Date(),
            }))
            .where('id', '=', policy.id)
            .returningAll()
            .executeTakeFirst();
          if (row === undefined) return undefined;
          const updated = toPolicy(row);
          // A budget's spend carries into its new period's counter (migration 0050).
          const oldPeriod =
            before === undefined
              ? undefined
              : fromStored(before.limits as StoredLimits).budget?.period;
          const newPeriod = updated.limits.budget?.period;
          if (oldPeriod !== undefined && newPeriod !== undefined && oldPeriod !== newPeriod)
            await sql`select brigade.carry_limit_counters(null, ${policy.id}::uuid, null, ${oldPeriod})`.execute(
              db,
            );
          await audit(db, {
            principal,
            policy: updated,
            action: 'policy.updated',
            data: patch.limits === undefined ? {} : { limits: patch.limits },
          });
          return updated;
        }),
      );
    },
    delete(principal, policy) {
      return database.withScope(scope(principal, policy.tenantId), async (db) => {
        const deleted = await db
          .deleteFrom('brigade.policies')
          .where('id', '=', policy.id)
          .executeTakeFirst();
        if (deleted.numDeletedRows === 0n) return false;
        await audit(db, { principal, policy, action: 'policy.deleted', data: {} });
        return true;
      });
    },
    subjectUser(principal, { tenantId, level, subjectId }) {
      return database.withScope(scope(principal, tenantId), async (db) => {
        if (level === 'agent') {
          const agent = await db
            .selectFrom('brigade.agents')
            .select('id')
            .where('tenant_id', '=', tenantId)
            .where('id', '=', subjectId)
            .executeTakeFirst();
          return agent === undefined ? undefined : null;
        }
        const userId =
          level === 'user'
            ? subjectId
            : (
                await db
                  .selectFrom('brigade.api_keys')
                  .select('user_id')
                  .where('tenant_id', '=', tenantId)
                  .where('id', '=', subjectId)
                  .executeTakeFirst()
              )?.user_id;
        if (userId === undefined) return undefined;
        const member = await db
          .selectFrom('brigade.memberships')
          .select(['user_id', 'role'])
          .where('tenant_id', '=', tenantId)
          .where('user_id', '=', userId)
          .executeTakeFirst();
        return member === undefined ? undefined : { userId: member.user_id, role: member.role };
      });
    },
    tenantExists(principal, tenantId) {
      return database.withScope(scope(principal), async (db) => {
        const row = await db
          .selectFrom('brigade.tenants')
          .select('id')
          .where('id', '=', tenantId)
          .executeTakeFirst();
        return row !== undefined;
      });
    },
    myLimits(principal) {
      return database.withScope(scopeFor(principal), async (db) => {
        const key = principal.keyId ?? null;
        const bound = await sql<Selectable<PoliciesTable>>`
          select p.* from brigade.policies p
           where (p.tenant_id is null or p.tenant_id = brigade.current_tenant_id())
             and (p.level in ('platform', 'tenant', 'agent')
                  or (p.level = 'role' and p.role = ${principal.role})
                  or (p.level = 'user' and p.subject_id = brigade.current_user_id())
                  or (p.level = 'api_key' and p.subject_id = ${key}::uuid))
           order by p.id`.execute(db);
        const policies = bound.rows.map(toPolicy);
        const limits: Partial<Record<(typeof numericLimitKinds)[number], EffectiveLimit>> = {};
        for (const policy of policies) {
          if (policy.level === 'agent') continue;
          for (const kind of numericLimitKinds) {
            const value = policy.limits[kind];
            const current = limits[kind];
            if (value !== undefined && (current === undefined || value < current.limit)) {
              limits[kind] = { limit: value, policyId: policy.id, level: policy.level };
            }
          }
        }
        const counters = await sql<CounterRow>`
          with bound as (
            select p.*, case when p.level in ('platform', 'tenant') then brigade.current_tenant_id()
                             when p.level in ('role', 'user') then brigade.current_user_id()
                             when p.level = 'api_key' then ${key}::uuid
                             else p.subject_id end as counted
              from brigade.policies p
             where p.id = any(${policies.map((policy) => policy.id)}::uuid[])),
          kinds as (
            select b.*, k.kind as counter_kind,
                   case k.kind when 'budget' then b.limits -> 'budget' ->> 'period' else 'day' end as period,
                   coalesce((b.limits -> 'budget' ->> 'windowHours')::int, 24) as window_hours,
                   case k.kind when 'budget' then (b.limits -> 'budget' ->> 'amountNanos')::bigint
                               when 'runs' then (b.limits ->> 'runsPerDay')::bigint
                               else (b.limits ->> 'toolCallsPerDay')::bigint end as limit_value
              from bound b
             cross join (values ('budget'), ('runs'), ('tool_calls')) as k(kind)
             where (k.kind = 'budget' and b.limits ? 'budget')
                or (k.kind = 'runs' and b.limits ? 'runsPerDay')
                or (k.kind = 'tool_calls' and b.limits ? 'toolCallsPerDay'))
          select k.id, k.level, k.subject_id, k.counter_kind, k.period, k.limit_value::text,
                 coalesce(sum(c.used), 0)::text as used, coalesce(sum(c.reserved), 0)::text as reserved,
                 case when k.period = 'rolling' then null else per.period_start end as period_start,
                 -- A rolling window frees room when its oldest spending in it leaves it (the
                 -- hour it was counted in, plus the window), as a refusal's resetsAt says.
                 case when k.period = 'rolling'
                      then min(c.period_start) filter (where c.used + c.reserved > 0)
                           + make_interval(hours => k.window_hours)
                      else per.resets_at end as resets_at
            from kinds k
           cross join lateral brigade.limit_period(
             k.period, (select time_zone from brigade.tenants where id = brigade.current_tenant_id()),
             k.window_hours) per
            left join brigade.limit_counters c
              on c.policy_id = k.id and c.kind = k.counter_kind and c.subject_id = k.counted
             and (case when k.period = 'rolling'
                       then c.period_start > now() - make_interval(hours => k.window_hours)
                       else c.period_start = per.period_start end)
           group by k.id, k.level, k.subject_id, k.counter_kind, k.period, k.limit_value,
                    k.window_hours, per.period_start, per.resets_at
           order by k.id, k.counter_kind`.execute(db);
        const budgets: CounterState[] = [];
        const quotas: CounterState[] = [];
        for (const row of counters.rows) {
          const scale = row.counter_kind === 'budget' ? nanosToUsd : (value: number) => value;
          const limit = Number(row.limit_value);
          const used = Number(row.used);
          const reserved = Number(row.reserved);
          const state: CounterState = {
            policyId: row.id,
            level: row.level,
            kind:
              row.counter_kind === 'budget'
                ? 'budget'
                : row.counter_kind === 'runs'
                  ? 'runsPerDay'
                  : 'toolCallsPerDay',
            period: row.period as CounterState['period'],
            agentId: row.level === 'agent' ? row.subject_id : null,
            limit: scale(limit),
            used: scale(used),
            reserved: scale(reserved),
            remaining: scale(Math.max(0, limit - used - reserved)),
            periodStart: row.period_start,
            resetsAt: row.resets_at,
          };
          (row.counter_kind === 'budget' ? budgets : quotas).push(state);
        }
        return { limits, budgets, quotas } satisfies MyLimits;
      });
    },
  };
}

/**
 * Every policy that can bind someone in `tenantId`: the tenant's and the platform's. For the
 * rate and concurrency limit cache (src/runtime/policy-cache.ts).
 */
export function loadTenantPolicies(database: Database, tenantId: string): Promise<Policy[]> {
  return database.withScope({ tenantId }, async (db) => {
    const rows = await db
      .selectFrom('brigade.policies')
      .selectAll()
      .where((eb) => eb.or([eb('tenant_id', 'is', null), eb('tenant_id', '=', tenantId)]))
      .execute();
    return rows.map(toPolicy);
  });
}
