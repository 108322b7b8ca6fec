import { type RawBuilder, sql } from 'kysely';
import { nanosToUsd } from '../../domain/guards/policy-types.ts';
import type {
  UsageDimension,
  UsageRow,
  UsageStore,
  UsageTotals,
} from '../../domain/guards/usage-service.ts';
import { scopeFor } from '../identity/scope-for.ts';
import type { Database } from '../postgres/database.ts';

/** The SQL expression of each dimension (`day` is the tenant-local calendar day). */
const dimensionSql: Readonly<Record<UsageDimension, RawBuilder<unknown>>> = {
  day: sql`to_char(u.created_at at time zone t.time_zone, 'YYYY-MM-DD')`,
  user: sql`u.user_id::text`,
  agent: sql`u.agent_id::text`,
  key: sql`u.key_id::text`,
  // The route the call named (its fallbacks' attempts and cache hits included); null when the
  // call named `local` or a `<provider>:<model>` directly.
  route: sql`u.route`,
  model: sql`u.model`,
  provider: sql`u.provider`,
  source: sql`u.source`,
};

interface TotalsRow {
  requests: string;
  errors: string;
  failed_attempts: string;
  input_tokens: string;
  output_tokens: string;
  cached_tokens: string;
  cost: string;
  [dimension: string]: string | null;
}

function toTotals(row: TotalsRow | undefined): UsageTotals {
  return {
    requests: Number(row?.requests ?? 0),
    errors: Number(row?.errors ?? 0),
    failedAttempts: Number(row?.failed_attempts ?? 0),
    inputTokens: Number(row?.input_tokens ?? 0),
    outputTokens: Number(row?.output_tokens ?? 0),
    cachedTokens: Number(row?.cached_tokens ?? 0),
    costUsd: nanosToUsd(Number(row?.cost ?? 0)),
  };
}

// A call's failed attempts have records of their own (kind 'attempt', cost 0, no tokens):
// they count as failed attempts, not as requests or errors.
const totalsSql = sql`count(*) filter (where u.kind = 'call')::text as requests,
  count(*) filter (where u.kind = 'call' and u.status <> 'ok')::text as errors,
  count(*) filter (where u.kind = 'attempt')::text as failed_attempts,
  coalesce(sum(u.input_tokens), 0)::text as input_tokens,
  coalesce(sum(u.output_tokens), 0)::text as output_tokens,
  coalesce(sum(u.cached_tokens), 0)::text as cached_tokens,
  coalesce(sum(u.cost), 0)::text as cost`;

/** The most groups a report lists; `truncated` says there were more. */
const maxGroups = 10_000;

/** The PostgreSQL {@link UsageStore}: one grouped query and one totals query. */
export function createUsageStore(database: Database): UsageStore {
  return {
    report(principal, query) {
      return database.withScope(scopeFor(principal, query.tenantId), async (db) => {
        const where = sql`u.tenant_id = ${query.tenantId}::uuid
          and u.created_at >= ${query.from}::timestamptz and u.created_at < ${query.to}::timestamptz
          ${query.userId === undefined ? sql`` : sql`and u.user_id = ${query.userId}::uuid`}`;
        const from = sql`brigade.usage_records u join brigade.tenants t on t.id = u.tenant_id`;
        const dims = query.groupBy.map(
          (dimension) => sql`${dimensionSql[dimension]} as ${sql.ref(dimension)}`,
        );
        const grouped =
          dims.length === 0
            ? { rows: [] as TotalsRow[] }
            : await sql<TotalsRow>`
                select ${sql.join(dims)}, ${totalsSql} from ${from} where ${where}
                 group by ${sql.join(query.groupBy.map((_, index) => sql.lit(index + 1)))}
                 order by ${sql.join(query.groupBy.map((_, index) => sql.lit(index + 1)))}
                 limit ${sql.lit(maxGroups + 1)}`.execute(db);
        const totals =
          await sql<TotalsRow>`select ${totalsSql} from ${from} where ${where}`.execute(db);
        const data: UsageRow[] = grouped.rows.slice(0, maxGroups).map((row) => ({
          ...Object.fromEntries(
            query.groupBy.map((dimension) => [dimension, row[dimension] ?? null]),
          ),
          ...toTotals(row),
        }));
        return {
          from: query.from,
          to: query.to,
          groupBy: query.groupBy,
          data,
          totals: toTotals(totals.rows[0]),
          truncated: grouped.rows.length > maxGroups,
        };
      });
    },
  };
}
