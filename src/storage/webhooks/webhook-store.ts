import { randomUUID } from 'node:crypto';
import { type Selectable, sql } from 'kysely';
import { AppError } from '../../domain/errors.ts';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import { open, seal } from '../../domain/tools/vault-crypto.ts';
import type { KeyProviderV1 } from '../../plugin-api/index.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import type { Database } from '../postgres/database.ts';
import type {
  BudgetAlertsTable,
  WebhookDeliveriesTable,
  WebhookEndpointsTable,
} from '../postgres/database-schema.ts';
import { createVaultKeys } from '../tools/vault-keys.ts';

/** A webhook endpoint as the API shows it (never its secret after creation). */
export interface WebhookEndpoint {
  readonly id: string;
  readonly url: string;
  readonly events: readonly string[];
  readonly description: string | null;
  readonly enabled: boolean;
  readonly createdAt: Date;
}

/** One queued or sent event of an endpoint. */
export interface WebhookDelivery {
  readonly id: string;
  readonly endpointId: string;
  readonly eventType: string;
  readonly payload: unknown;
  readonly status: 'pending' | 'delivered' | 'failed';
  readonly attempts: number;
  readonly nextAttemptAt: Date;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  readonly createdAt: Date;
  readonly deliveredAt: Date | null;
}

/** A budget threshold crossed. */
export interface BudgetAlert {
  readonly id: string;
  readonly policyId: string;
  readonly subjectId: string;
  readonly periodStart: Date;
  readonly threshold: number;
  readonly usedUsd: number;
  readonly limitUsd: number;
  readonly createdAt: Date;
}

function toEndpoint(row: Selectable<WebhookEndpointsTable>): WebhookEndpoint {
  return {
    id: row.id,
    url: row.url,
    events: row.events,
    description: row.description,
    enabled: row.enabled,
    createdAt: row.created_at,
  };
}

function toDelivery(row: Selectable<WebhookDeliveriesTable>): WebhookDelivery {
  return {
    id: row.id,
    endpointId: row.endpoint_id,
    eventType: row.event_type,
    payload: row.payload,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    lastStatus: row.last_status,
    lastError: row.last_error,
    createdAt: row.created_at,
    deliveredAt: row.delivered_at,
  };
}

function toAlert(row: Selectable<BudgetAlertsTable>): BudgetAlert {
  return {
    id: row.id,
    policyId: row.policy_id,
    subjectId: row.subject_id,
    periodStart: row.period_start,
    threshold: row.threshold,
    usedUsd: Number(row.used) / 1e9,
    limitUsd: Number(row.limit_value) / 1e9,
    createdAt: row.created_at,
  };
}

/** A delivery the worker claimed, with where and how to send it. */
export interface ClaimedDelivery {
  readonly id: string;
  readonly tenantId: string;
  readonly attempts: number;
  readonly eventType: string;
  readonly payload: unknown;
  readonly url: string;
  /** Undefined when it is sealed and this process has no vault key to open it. */
  readonly secret: string | undefined;
}

/** The AAD of a sealed webhook secret: it opens only for its own tenant and endpoint. */
const secretContext = (tenantId: string, endpointId: string) =>
  `webhook-secret:${tenantId}:${endpointId}`;

/**
 * Webhook endpoints (admins), the delivery outbox, and budget alerts. With the vault's key
 * provider, signing secrets are stored sealed with the tenant's data key; without one, plain.
 */
export function createWebhookStore(
  database: Database,
  keyProvider?: KeyProviderV1,
  limits: { readonly maxPerTenant: number } = { maxPerTenant: 25 },
) {
  const vault = keyProvider === undefined ? undefined : createVaultKeys(keyProvider);

  /** The claimed rows' secrets, opened with their tenants' keys (one scope per tenant). */
  async function openSecrets(
    rows: readonly { tenant_id: string; endpoint_id: string; sealed_secret: Buffer | null }[],
  ): Promise<Map<string, string>> {
    const opened = new Map<string, string>();
    const tenants = new Set(
      rows.filter((row) => row.sealed_secret !== null).map((row) => row.tenant_id),
    );
    if (vault === undefined || tenants.size === 0) return opened;
    for (const tenantId of tenants) {
      // A tenant key that cannot be had (the key provider is down) leaves its secrets unopened:
      // those deliveries fail this attempt and are retried.
      const key = await database
        .withScope({ tenantId }, (db) => vault.tenantKey(db, tenantId))
        .catch(() => undefined);
      if (key === undefined) continue;
      for (const row of rows) {
        if (row.tenant_id !== tenantId || row.sealed_secret === null) continue;
        // A sealed secret that does not open here (copied from another endpoint, altered) is
        // left unopened: its deliveries fail rather than be signed with the wrong secret.
        try {
          const context = secretContext(tenantId, row.endpoint_id);
          opened.set(row.endpoint_id, open(key, row.sealed_secret, context).toString('utf8'));
        } catch {
          // Left out.
        }
      }
    }
    return opened;
  }

  return {
    create(
      principal: UserPrincipal,
      input: { url: string; events: readonly string[]; description: string | null; secret: string },
    ): Promise<WebhookEndpoint> {
      return database.withScope(scopeFor(principal), async (db) => {
        // Two creations at once count each other: the tenant's creations take turns.
        await sql`select pg_advisory_xact_lock(hashtext('brigade.webhooks'), hashtext(${principal.tenantId}::text))`.execute(
          db,
        );
        const { count } = await db
          .selectFrom('brigade.webhook_endpoints')
          .select((eb) => eb.fn.countAll<string>().as('count'))
          .where('tenant_id', '=', principal.tenantId)
          .executeTakeFirstOrThrow();
        if (Number(count) >= limits.maxPerTenant)
          throw new AppError(
            'webhook_limit_exceeded',
            `The tenant has ${limits.maxPerTenant} webhooks, the most it may have; delete one first.`,
            { details: { maxPerTenant: limits.maxPerTenant } },
          );
        const id = randomUUID();
        const key = vault === undefined ? undefined : await vault.tenantKey(db, principal.tenantId);
        const row = await db
          .insertInto('brigade.webhook_endpoints')
          .values({
            tenant_id: principal.tenantId,
            id,
            url: input.url,
            events: [...input.events],
            description: input.description,
            ...(key === undefined
              ? { secret: input.secret, sealed_secret: null }
              : {
                  secret: null,
                  sealed_secret: seal(
                    key,
                    Buffer.from(input.secret, 'utf8'),
                    secretContext(principal.tenantId, id),
                  ),
                }),
            created_by_user_id: principal.userId,
            created_at: new Date(),
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'webhook.created',
            targetType: 'webhook',
            targetId: row.id,
            outcome: 'success',
            data: { url: input.url, events: input.events },
          },
        });
        return toEndpoint(row);
      });
    },
    list(principal: UserPrincipal): Promise<WebhookEndpoint[]> {
      return database.withScope(scopeFor(principal), async (db) => {
        const rows = await db
          .selectFrom('brigade.webhook_endpoints')
          .selectAll()
          .orderBy('created_at')
          .execute();
        return rows.map(toEndpoint);
      });
    },
    delete(principal: UserPrincipal, endpointId: string): Promise<boolean> {
      return database.withScope(scopeFor(principal), async (db) => {
        const deleted = await db
          .deleteFrom('brigade.webhook_endpoints')
          .where('id', '=', endpointId)
          .executeTakeFirst();
        if (deleted.numDeletedRows === 0n) return false;
        await writeAudit(db, {
          tenantId: principal.tenantId,
          principal,
          record: {
            action: 'webhook.deleted',
            targetType: 'webhook',
            targetId: endpointId,
            outcome: 'success',
          },
        });
        return true;
      });
    },
    deliveries(
      principal: UserPrincipal,
      endpointId: string,
    ): Promise<WebhookDelivery[] | undefined> {
      return database.withScope(scopeFor(principal), async (db) => {
        const endpoint = await db
          .selectFrom('brigade.webhook_endpoints')
          .select('id')
          .where('id', '=', endpointId)
          .executeTakeFirst();
        if (endpoint === undefined) return undefined;
        const rows = await db
          .selectFrom('brigade.webhook_deliveries')
          .selectAll()
          .where('endpoint_id', '=', endpointId)
          .orderBy('created_at', 'desc')
          .limit(100)
          .execute();
        return rows.map(toDelivery);
      });
    },
    alerts(principal: UserPrincipal): Promise<BudgetAlert[]> {
      return database.withScope(scopeFor(principal), async (db) => {
        const rows = await db
          .selectFrom('brigade.budget_alerts')
          .selectAll()
          .orderBy('created_at', 'desc')
          .limit(200)
          .execute();
        return rows.map(toAlert);
      });
    },

    /**
     * Queues a webhook delivery per subscribed endpoint for every budget alert not announced
     * yet, in every tenant (the worker's scheduler scope). Returns how many were queued.
     */
    announceAlerts(): Promise<number> {
      return database.withScope({ scheduler: true }, async (db) => {
        const result = await sql<{ n: number }>`
          with due as (
            select * from brigade.budget_alerts where announced_at is null
             order by created_at limit 100 for update skip locked),
          queued as (
            insert into brigade.webhook_deliveries (tenant_id, endpoint_id, event_type, payload)
            select d.tenant_id, e.id, 'budget.threshold',
                   jsonb_build_object('alertId', d.id, 'policyId', d.policy_id,
                                      'subjectId', d.subject_id, 'threshold', d.threshold,
                                      'usedUsd', d.used::numeric / 1e9,
                                      'limitUsd', d.limit_value::numeric / 1e9,
                                      'periodStart', to_char(d.period_start at time zone 'UTC',
                                                             'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
              from due d join brigade.webhook_endpoints e
                on e.tenant_id = d.tenant_id and e.enabled and 'budget.threshold' = any(e.events)
            returning 1),
          marked as (
            update brigade.budget_alerts a set announced_at = now()
              from due where a.id = due.id and a.tenant_id = due.tenant_id returning 1)
          select (select count(*) from queued)::int as n, (select count(*) from marked)`.execute(
          db,
        );
        return result.rows[0]?.n ?? 0;
      });
    },

    /**
     * Claims up to `limit` due deliveries: each gets its next attempt time pushed out by
     * `leaseMs` first, so a crash mid-send leaves it to be retried, not lost. Tenants take
     * turns: every tenant's oldest due delivery comes before any tenant's second (then by due
     * time), so a tenant with thousands of due deliveries to receivers that never answer holds
     * another tenant's next delivery back by one claim at most, not by its whole backlog.
     */
    async claim(limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
      const rows = await database.withScope({ scheduler: true }, async (db) => {
        const result = await sql<{
          id: string;
          tenant_id: string;
          attempts: number;
          event_type: string;
          payload: unknown;
          url: string;
          endpoint_id: string;
          secret: string | null;
          sealed_secret: Buffer | null;
        }>`
          update brigade.webhook_deliveries d
             set attempts = d.attempts + 1,
                 next_attempt_at = now() + ${`${leaseMs} milliseconds`}::interval
            from brigade.webhook_endpoints e
           where e.id = d.endpoint_id
             and d.id in (
               select ranked.id from (
                 select due.id, due.next_attempt_at,
                        row_number() over (partition by due.tenant_id
                                           order by due.next_attempt_at) as turn
                   from (select distinct tenant_id from brigade.webhook_deliveries
                          where status = 'pending' and next_attempt_at <= now()) tenants
                  cross join lateral (
                    select x.id, x.tenant_id, x.next_attempt_at
                      from brigade.webhook_deliveries x
                     where x.tenant_id = tenants.tenant_id and x.status = 'pending'
                       and x.next_attempt_at <= now()
                     order by x.next_attempt_at limit ${limit}
                       for update skip locked) due) ranked
                order by ranked.turn, ranked.next_attempt_at limit ${limit})
          returning d.id, d.tenant_id, d.attempts, d.event_type, d.payload, e.url,
                    e.id as endpoint_id, e.secret, e.sealed_secret`.execute(db);
        return result.rows;
      });
      const opened = await openSecrets(rows);
      return rows.map((row) => ({
        id: row.id,
        tenantId: row.tenant_id,
        attempts: row.attempts,
        eventType: row.event_type,
        payload: row.payload,
        url: row.url,
        secret: row.secret ?? opened.get(row.endpoint_id),
      }));
    },

    /** Records an attempt's outcome: delivered, retried at `retryAt`, or failed for good. */
    finish(
      deliveryId: string,
      outcome: { ok: boolean; status: number | null; error: string | null; retryAt: Date | null },
    ): Promise<void> {
      return database.withScope({ scheduler: true }, async (db) => {
        await db
          .updateTable('brigade.webhook_deliveries')
          .set({
            status: outcome.ok ? 'delivered' : outcome.retryAt === null ? 'failed' : 'pending',
            last_status: outcome.status,
            last_error: outcome.error,
            ...(outcome.ok ? { delivered_at: new Date() } : {}),
            ...(outcome.retryAt === null ? {} : { next_attempt_at: outcome.retryAt }),
          })
          .where('id', '=', deliveryId)
          .execute();
      });
    },
  };
}

/** The webhook store's type. */
export type WebhookStore = ReturnType<typeof createWebhookStore>;
