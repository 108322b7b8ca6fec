import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { AppError } from '../../domain/errors.ts';
import { formatUsd, nanosToUsd } from '../../domain/guards/policy-types.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import {
  createBudgetCalls,
  type ReserveCall,
  type ReserveRow,
  type SettleCall,
} from './budget-calls.ts';

/** Who a metered call is for: every budget, quota and usage record is attributed to them. */
export interface Spender {
  readonly tenantId: string;
  readonly userId: string;
  readonly keyId?: string | null | undefined;
  readonly agentId?: string | null | undefined;
  readonly runId?: string | null | undefined;
}

/** A reservation held while a model call runs (undefined `id`: no budget binds the caller). */
/**
 * Sends a reservation committed with the caller's own write, in one transaction (a run's tool
 * step: migration 0032); undefined when it reserved nothing there, and the reservation is
 * then sent as usual.
 */
export type ReserveVia = (call: ReserveCall) => Promise<ReserveRow | undefined>;

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
  /** A failed attempt before the call's own record (default: the call's record). */
  readonly kind?: 'call' | 'attempt' | undefined;
  /** The call's deployments tried, the answering one included (calls only). */
  readonly attempts?: number | undefined;
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

export type ReserveResult = { readonly ok: true; readonly counters: unknown[] } | Refusal;

const periodAdjective: Readonly<Record<string, string>> = {
  day: 'daily',
  week: 'weekly',
  month: 'monthly',
  rolling: 'rolling',
};

function scopeOf(spender: Spender) {
  return { tenantId: spender.tenantId, userId: spender.userId };
}

/** A timestamp of reserve_limits' verdict (PostgreSQL's text form) in ISO 8601, UTC. */
function isoOf(when: string | null): string | null {
  return when === null ? null : new Date(when).toISOString();
}

function secondsUntil(when: string | null): number {
  if (when === null) return 60;
  return Math.max(1, Math.ceil((new Date(when).getTime() - Date.now()) / 1000));
}

/** One usage record as brigade.settle_call's JSON (tenant, user and reservation are its own). */
function usageRow(spender: Spender, entry: UsageEntry): Record<string, unknown> {
  return {
    key_id: spender.keyId ?? null,
    agent_id: spender.agentId ?? null,
    run_id: spender.runId ?? null,
    source: entry.source,
    route: entry.route ?? null,
    provider: entry.provider,
    model: entry.model,
    input_tokens: Math.round(entry.inputTokens),
    output_tokens: Math.round(entry.outputTokens),
    cached_tokens: Math.round(entry.cachedTokens ?? 0),
    estimated: entry.estimated,
    cost: Math.round(entry.cost),
    latency_ms: Math.round(entry.latencyMs),
    ttft_ms: entry.ttftMs === null ? null : Math.round(entry.ttftMs),
    status: entry.status,
    error_code: entry.errorCode ?? null,
    kind: entry.kind ?? 'call',
    attempts: entry.kind === 'attempt' ? null : (entry.attempts ?? null),
  };
}

/** What a settlement records: the call's usage and the failed attempts before it (cost 0). */
export interface SettledUsage {
  readonly entry: UsageEntry;
  readonly failedAttempts?: readonly UsageEntry[];
}

/** brigade.settle_call's arguments for settling `reservation` to `usage`. */
function settlementOf(spender: Spender, reservation: Reservation, usage: SettledUsage): SettleCall {
  const { entry, failedAttempts = [] } = usage;
  return {
    tenant: spender.tenantId,
    user: spender.userId,
    reservation: reservation.id ?? null,
    cost: Math.round(entry.cost),
    status: entry.cost === 0 ? 'released' : 'settled',
    usage: [...failedAttempts, entry].map((recorded) => usageRow(spender, recorded)),
  };
}

/** The prepared call of brigade.consume_quota (migration 0016). */
const consumeQuotaStatement = {
  name: 'brigade_consume_quota',
  text: 'select brigade.consume_quota($1, $2, $3, $4, $5) as res',
};

/**
 * Exact budgets and quotas (DESIGN.md invariant 7) on the counters of migration 0004, and the
 * usage ledger. Every method is one scoped transaction.
 */
export function createBudgetStore(database: Database) {
  const calls = createBudgetCalls(database);

  /**
   * A refused call whose budget is spent (what its period used has reached the limit: a limit
   * lowered below it, an orphan charged) records the 100 % alert, once per period. A call
   * refused because its own worst case does not fit records nothing: nothing more was spent,
   * and an early 100 % would stand in for the real crossing, which then would not alert.
   */
  async function recordExhausted(spender: Spender, refusal: Refusal): Promise<void> {
    if (refusal.subjectId === undefined || refusal.periodStart === undefined) return;
    if (refusal.period === 'rolling') return;
    const limit = Number(refusal.limit);
    await database.withScope(scopeOf(spender), (db) =>
      db
        .insertInto('brigade.budget_alerts')
        .columns([
          'tenant_id',
          'policy_id',
          'subject_id',
          'period_start',
          'threshold',
          'used',
          'limit_value',
        ])
        .expression(
          db
            .selectFrom('brigade.limit_counters')
            .select([
              'tenant_id',
              'policy_id',
              'subject_id',
              'period_start',
              sql.lit(100).as('threshold'),
              'used',
              sql.lit(limit).as('limit_value'),
            ])
            .where('policy_id', '=', refusal.policyId)
            .where('kind', '=', 'budget')
            .where('subject_id', '=', refusal.subjectId as string)
            .where('period_start', '=', new Date(refusal.periodStart as string))
            .where('used', '>=', String(limit)),
        )
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
    async reserve(
      spender: Spender,
      amount: number,
      options: { readonly expiresAt: Date; readonly via?: ReserveVia | undefined },
    ): Promise<Reservation> {
      const id = randomUUID();
      const call: ReserveCall = {
        tenant: spender.tenantId,
        user: spender.userId,
        amount: Math.round(amount),
        key: spender.keyId ?? null,
        agent: spender.agentId ?? null,
        id,
        run: spender.runId ?? null,
        expires: options.expiresAt,
      };
      // brigade.reserve_call (migration 0014), alone or in its tenant's batch (0019):
      // reserve_limits over every binding budget and, when one binds, the reservation row,
      // under the spender's scope; or the same call committed with the caller's own write.
      const row = (await options.via?.(call)) ?? (await calls.reserve(call));
      const res = row?.res;
      if (res === undefined) throw new Error('reserve_limits returned nothing');
      if (!res.ok) {
        const remaining = Math.max(0, Number(res.limit) - Number(res.taken));
        await recordExhausted(spender, res).catch(() => undefined);
        const resetsAt = isoOf(res.resetsAt);
        const resets = resetsAt === null ? '' : ` It resets at ${resetsAt}.`;
        throw new AppError(
          'budget_exceeded',
          `This call could cost up to ${formatUsd(nanosToUsd(amount))}, more than the ${formatUsd(nanosToUsd(remaining))} left of the ${periodAdjective[res.period] ?? res.period} budget set by the ${res.level} policy.${resets}`,
          {
            details: {
              policyId: res.policyId,
              level: res.level,
              period: res.period,
              limitUsd: nanosToUsd(Number(res.limit)),
              remainingUsd: nanosToUsd(remaining),
              requiredUsd: nanosToUsd(amount),
              resetsAt,
            },
          },
        );
      }
      return { id: row?.reservation_id ?? undefined, amount };
    },

    /**
     * Settles a reservation to the call's actual cost and writes its usage record, in one
     * transaction. A reservation already resolved (taken over as orphaned while this process
     * stalled) keeps its orphan charge, and no second record is written. Returns the budget
     * alert thresholds the settlement crossed.
     */
    async settle(spender: Spender, reservation: Reservation, usage: SettledUsage): Promise<number> {
      // brigade.settle_call (migration 0014), alone or in its tenant's batch (0019): resolve
      // the reservation and, only if this call resolved it, record the budget thresholds
      // crossed (50/80/100 %, announced by the webhook worker) and write the usage records.
      return calls.settle(settlementOf(spender, reservation, usage));
    },

    /**
     * The settlement {@link settle} would send, for a caller that commits it in a transaction
     * of its own (a run's model step: migration 0023), with `settle` as its fallback.
     */
    settlement: settlementOf,

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
      // One prepared call of brigade.consume_quota (migration 0016); all or nothing inside.
      const [row] = await database.callPrepared(consumeQuotaStatement, [
        spender.tenantId,
        spender.userId,
        kind,
        spender.keyId ?? null,
        spender.agentId ?? null,
      ]);
      refuseQuota(kind, row?.['res'] as ReserveResult | undefined);
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
  refuseQuota(kind, result.rows[0]?.res);
}

/**
 * Throws `quota_exceeded`, with the seconds until the quota resets, when reserve_limits'
 * verdict `res` refused; returns when it did not.
 */
export function refuseQuota(kind: 'runs' | 'tool_calls', res: ReserveResult | undefined): void {
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
        resetsAt: isoOf(res.resetsAt),
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
  // Counters before reservations, in the order every writer takes them (migration 0059): the
  // candidates are read without a lock, all their counters locked in that order, and then
  // resolve_reservation resolves each one still open (a settlement may have come first).
  // Locking the reservations first (as this did) deadlocked with a late settlement or a
  // time-zone change's carry over the same counters.
  const candidates = await sql<{ id: string }>`
    select id from brigade.budget_reservations
     where status = 'reserved' and ${condition}
     order by expires_at
     limit ${limit}`.execute(db);
  const ids = candidates.rows.map((row) => row.id);
  if (ids.length === 0) return 0;
  await sql`
    select 1 from brigade.limit_counters c
      join (select distinct k."policyId", k."subjectId", k."periodStart"
              from brigade.budget_reservations r,
                   jsonb_to_recordset(r.counters)
                     as k("policyId" uuid, "subjectId" uuid, "periodStart" timestamptz)
             where r.id = any(${ids}::uuid[])) k
        on c.policy_id = k."policyId" and c.kind = 'budget' and c.subject_id = k."subjectId"
       and c.period_start = k."periodStart"
     order by c.policy_id, c.kind, c.subject_id, c.period_start
       for update of c`.execute(db);
  const result = await sql<{ count: number }>`
    with open as (
      select id, tenant_id, user_id, run_id, amount from brigade.budget_reservations
       where status = 'reserved' and id = any(${ids}::uuid[])),
    resolved as (
      select o.*, brigade.resolve_reservation(o.id, o.amount, 'orphaned') as done from open o),
    -- No RETURNING: rows it returns must pass the table's read policy, which the scheduler's
    -- scope (every tenant, no user) does not, and the whole sweep failed on it.
    recorded as (
      insert into brigade.usage_records
        (tenant_id, user_id, run_id, source, provider, model, cost, status, error_code, reservation_id)
      select tenant_id, user_id, run_id, case when run_id is null then 'api' else 'run' end,
             'unknown', 'unknown', amount, 'orphaned', 'process_lost', id
        from resolved where done)
    select count(*)::int as count from resolved where done`.execute(db);
  return result.rows[0]?.count ?? 0;
}

/** The budget store's type. */
export type BudgetStore = ReturnType<typeof createBudgetStore>;
