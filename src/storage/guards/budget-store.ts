import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { AppError } from '../../domain/errors.ts';
import { nanosToUsd } from '../../domain/guards/policy-types.ts';
import { type Database, type ScopedDb, sqlLiteral } from '../postgres/database.ts';

/** Who a metered call is for: every budget, quota and usage record is attributed to them. */
export interface Spender {
  readonly tenantId: string;
  readonly userId: string;
  readonly keyId?: string | null | undefined;
  readonly agentId?: string | null | undefined;
  readonly runId?: string | null | undefined;
}

/** A reservation held while a model call runs (undefined `id`: no budget binds the caller). */
export interface Reservation {
  readonly id: string | undefined;
  readonly amount: number;
}

/** One usage record (a model call), amounts in nano-USD. */
export interface UsageEntry {
  readonly source: 'run' | 'api';
  readonly route?: string | null | undefined;
  readonly provider: string;
  readonly model: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cachedTokens?: number | undefined;
  readonly estimated: boolean;
  readonly cost: number;
  readonly latencyMs: number;
  readonly ttftMs: number | null;
  readonly status: 'ok' | 'error' | 'cancelled';
  readonly errorCode?: string | null | undefined;
}

interface Refusal {
  readonly ok: false;
  readonly policyId: string;
  readonly level: string;
  readonly limit: number;
  readonly taken: number;
  readonly period: string;
  readonly resetsAt: string | null;
  readonly subjectId?: string;
  readonly periodStart?: string;
}

type ReserveResult = { readonly ok: true; readonly counters: unknown[] } | Refusal;

const periodAdjective: Readonly<Record<string, string>> = {
  day: 'daily',
  week: 'weekly',
  month: 'monthly',
  rolling: 'rolling',
};

function scopeOf(spender: Spender) {
  return { tenantId: spender.tenantId, userId: spender.userId };
}

function secondsUntil(when: string | null): number {
  if (when === null) return 60;
  return Math.max(1, Math.ceil((new Date(when).getTime() - Date.now()) / 1000));
}

/** One usage record as a row of literals (typed, so a VALUES list needs no further casts). */
function usageRow(spender: Spender, entry: UsageEntry, reservationId: string | undefined): string {
  const text = (value: string | null | undefined) =>
    value === null || value === undefined ? 'null::text' : `${sqlLiteral(value)}::text`;
  const uuid = (value: string | null | undefined) =>
    value === null || value === undefined ? 'null::uuid' : `${sqlLiteral(value)}::uuid`;
  const int = (value: number) => `${sqlLiteral(Math.round(value))}::int`;
  return `(${[
    uuid(spender.tenantId),
    uuid(spender.userId),
    uuid(spender.keyId),
    uuid(spender.agentId),
    uuid(spender.runId),
    text(entry.source),
    text(entry.route),
    text(entry.provider),
    text(entry.model),
    int(entry.inputTokens),
    int(entry.outputTokens),
    int(entry.cachedTokens ?? 0),
    entry.estimated ? 'true' : 'false',
    `${sqlLiteral(entry.cost)}::bigint`,
    int(entry.latencyMs),
    entry.ttftMs === null ? 'null::int' : int(entry.ttftMs),
    text(entry.status),
    text(entry.errorCode),
    uuid(reservationId),
  ].join(', ')})`;
}

/**
 * Exact budgets and quotas (DESIGN.md invariant 7) on the counters of migration 0004, and the
 * usage ledger. Every method is one scoped transaction.
 */
export function createBudgetStore(database: Database) {
  /** A refused call means the budget is spent: its 100 % alert, once per period. */
  async function recordExhausted(spender: Spender, refusal: Refusal): Promise<void> {
    if (refusal.subjectId === undefined || refusal.periodStart === undefined) return;
    if (refusal.period === 'rolling') return;
    await database.withScope(scopeOf(spender), (db) =>
      db
        .insertInto('brigade.budget_alerts')
        .values({
          tenant_id: spender.tenantId,
          policy_id: refusal.policyId,
          subject_id: refusal.subjectId as string,
          period_start: refusal.periodStart as string,
          threshold: 100,
          used: Number(refusal.taken),
          limit_value: Number(refusal.limit),
        })
        .onConflict((conflict) => conflict.doNothing())
        .execute(),
    );
  }

  return {
    /**
     * Reserves `amount` nano-USD against every budget binding the spender, or throws
     * `budget_exceeded` naming the policy, what is left and when its period resets. Nothing
     * is reserved when the call is refused.
     */
    async reserve(spender: Spender, amount: number, expiresAt: Date): Promise<Reservation> {
      const id = randomUUID();
      // One round trip (BEGIN; scope; statement; COMMIT on the simple protocol) instead of
      // three: every value is a number, a UUID or a timestamp, inlined as an escaped literal.
      const literal = (value: string | number | null | undefined) =>
        value === null || value === undefined ? 'null' : sqlLiteral(value);
      const [rows = []] = await database.readScoped(scopeOf(spender), [
        `with r as (
           select brigade.reserve_limits('budget', ${literal(amount)}::bigint, false,
                                         ${literal(spender.keyId)}::uuid,
                                         ${literal(spender.agentId)}::uuid) as res),
         ins as (
           insert into brigade.budget_reservations
             (id, tenant_id, user_id, run_id, amount, counters, expires_at)
           select ${literal(id)}::uuid, ${literal(spender.tenantId)}::uuid,
                  ${literal(spender.userId)}::uuid, ${literal(spender.runId)}::uuid,
                  ${literal(amount)}::bigint, r.res -> 'counters',
                  ${literal(expiresAt.toISOString())}::timestamptz
             from r
            where (r.res ->> 'ok')::boolean and jsonb_array_length(r.res -> 'counters') > 0
           returning id)
         select r.res, (select id from ins) as reservation_id from r`,
      ]);
      const row = rows[0] as { res: ReserveResult; reservation_id: string | null } | undefined;
      const res = row?.res;
      if (res === undefined) throw new Error('reserve_limits returned nothing');
      if (!res.ok) {
        const remaining = Math.max(0, Number(res.limit) - Number(res.taken));
        await recordExhausted(spender, res).catch(() => undefined);
        throw new AppError(
          'budget_exceeded',
          `This call could cost up to $${nanosToUsd(amount).toFixed(6)}, more than the $${nanosToUsd(remaining).toFixed(6)} left of the ${periodAdjective[res.period] ?? res.period} budget set by the ${res.level} policy.`,
          {
            details: {
              policyId: res.policyId,
              level: res.level,
              period: res.period,
              limitUsd: nanosToUsd(Number(res.limit)),
              remainingUsd: nanosToUsd(remaining),
              requiredUsd: nanosToUsd(amount),
              resetsAt: res.resetsAt,
            },
          },
        );
      }
      return { id: row?.reservation_id ?? undefined, amount };
    },

    /**
     * Settles a reservation to the call's actual cost and writes its usage record, in one
     * transaction. A reservation already resolved (taken over as orphaned while this process
     * stalled) keeps its orphan charge, and no second record is written.
     */
    async settle(
      spender: Spender,
      reservation: Reservation,
      usage: {
        readonly entry: UsageEntry;
        /** Attempts that failed before the one that settled (routing retries), cost 0. */
        readonly failedAttempts?: readonly UsageEntry[];
      },
    ): Promise<number> {
      const { entry, failedAttempts = [] } = usage;
      // One round trip (simple protocol, values inlined as escaped literals) instead of five:
      // resolve the reservation, remember in a transaction-local setting whether this call did
      // it, record the budget thresholds it crossed and write the usage records only if so.
      const id = reservation.id === undefined ? null : sqlLiteral(reservation.id);
      const status = sqlLiteral(entry.cost === 0 ? 'released' : 'settled');
      const settled = "current_setting('brigade.settling', true)::boolean";
      const [, [crossed] = []] = await database.readScoped(scopeOf(spender), [
        id === null
          ? `select set_config('brigade.settling', 'true', true)`
          : `select set_config('brigade.settling', coalesce(brigade.resolve_reservation(
               ${id}::uuid, ${sqlLiteral(entry.cost)}::bigint, ${status}), false)::text, true)`,
        // Thresholds (50/80/100 %) this cost crossed: recorded once, announced by the webhook
        // worker. A CASE evaluates its subquery only when the reservation was resolved here.
        id === null
          ? 'select 0 as crossings'
          : `select case when ${settled}
               then (select count(*) from brigade.record_budget_crossings(${id}::uuid))
               else 0 end::int as crossings`,
        `insert into brigade.usage_records
           (tenant_id, user_id, key_id, agent_id, run_id, source, route, provider, model,
            input_tokens, output_tokens, cached_tokens, estimated, cost, latency_ms, ttft_ms,
            status, error_code, reservation_id)
         select * from (values ${[...failedAttempts, entry]
           .map((recorded) => usageRow(spender, recorded, reservation.id))
           .join(', ')}) as v
          where ${settled}`,
      ]);
      return Number((crossed as { crossings?: number } | undefined)?.crossings ?? 0);
    },

    /** The largest share (0–1) used or reserved of any budget binding the spender now. */
    async utilization(spender: Spender): Promise<number> {
      return database.withScope(scopeOf(spender), async (db) => {
        const result = await sql<{ share: number }>`
          select brigade.budget_utilization(${spender.keyId ?? null}::uuid,
                                            ${spender.agentId ?? null}::uuid) as share`.execute(db);
        return Number(result.rows[0]?.share ?? 0);
      });
    },

    /**
     * Adds one unit to every binding quota of `kind` for today (tenant time zone), or throws
     * `quota_exceeded` with the seconds until it resets.
     */
    async consumeQuota(spender: Spender, kind: 'runs' | 'tool_calls'): Promise<void> {
      await database.withScope(scopeOf(spender), (db) => consumeQuotaIn(db, spender, kind));
    },

    /**
     * Resolves the open reservations of a run whose process died: the provider may have been
     * paid, so each is charged its full reserved amount (never less than was spent) and an
     * `orphaned` usage record says so. Returns how many were resolved.
     */
    async resolveRunReservations(spender: Spender & { runId: string }): Promise<number> {
      return database.withScope(scopeOf(spender), (db) =>
        resolveOrphans(db, sql`run_id = ${spender.runId}::uuid`),
      );
    },

    /** Resolves reservations past their expiry in every tenant (the scheduler's sweep). */
    async resolveExpired(limit = 100): Promise<number> {
      return database.withScope({ scheduler: true }, (db) =>
        resolveOrphans(db, sql`expires_at < now()`, limit),
      );
    },
  };
}

/**
 * Adds one unit to every binding quota of `kind` for today (tenant time zone) inside the
 * caller's transaction, or throws `quota_exceeded` with the seconds until it resets (the
 * caller's transaction then rolls back, and with it every counter this call touched).
 */
export async function consumeQuotaIn(
  db: ScopedDb,
  spender: Spender,
  kind: 'runs' | 'tool_calls',
): Promise<void> {
  const result = await sql<{ res: ReserveResult }>`
    select brigade.reserve_limits(${kind}, 1, true, ${spender.keyId ?? null}::uuid,
                                  ${spender.agentId ?? null}::uuid) as res`.execute(db);
  const res = result.rows[0]?.res;
  if (res === undefined || res.ok) return;
  const label = kind === 'runs' ? 'runs' : 'tool calls';
  throw new AppError(
    'quota_exceeded',
    `The daily quota of ${res.limit} ${label} set by the ${res.level} policy is used up.`,
    {
      details: {
        policyId: res.policyId,
        level: res.level,
        limit: Number(res.limit),
        used: Number(res.taken),
        resetsAt: res.resetsAt,
        retryAfterSeconds: secondsUntil(res.resetsAt),
      },
    },
  );
}

async function resolveOrphans(
  db: ScopedDb,
  condition: ReturnType<typeof sql>,
  limit = 100,
): Promise<number> {
  const result = await sql<{ id: string }>`
    with open as (
      select id, tenant_id, user_id, run_id, amount from brigade.budget_reservations
       where status = 'reserved' and ${condition}
       order by expires_at
       limit ${limit}
       for update skip locked),
    resolved as (
      select o.*, brigade.resolve_reservation(o.id, o.amount, 'orphaned') as done from open o)
    insert into brigade.usage_records
      (tenant_id, user_id, run_id, source, provider, model, cost, status, error_code, reservation_id)
    select tenant_id, user_id, run_id, case when run_id is null then 'api' else 'run' end,
           'unknown', 'unknown', amount, 'orphaned', 'process_lost', id
      from resolved where done
    returning reservation_id as id`.execute(db);
  return result.rows.length;
}

/** The budget store's type. */
export type BudgetStore = ReturnType<typeof createBudgetStore>;
