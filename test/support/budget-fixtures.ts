import type pg from 'pg';
import { expect } from 'vitest';
import type { MockModelServer } from '../../src/testing/index.ts';
import { type ApiClient, apiClient, type Created, seedTenant, seedUser } from './api-client.ts';
import { testOperatorKey } from './test-brigade.ts';

/** Nano-USD per USD, as budgets and the ledger count money. */
export const nanosPerUsd = 1_000_000_000;

/**
 * Config of a Brigade process billing `mock:priced` to the mock model at `mockUrl`: input at
 * $0 and output at $1 per million tokens (1,000 nano-USD per token), so a call's worst case is
 * its `maxOutputTokens` × 1,000. Per-tenant and per-user run caps and request limits are lifted
 * so only budgets refuse anything; `runs` adds to the run settings.
 */
export function pricedConfig(mockUrl: string, runs: Record<string, number> = {}) {
  return {
    providers: { mock: { type: 'openai-compatible', baseUrl: mockUrl } },
    models: { prices: { 'mock:priced': { inputPerMTok: 0, outputPerMTok: 1 } } },
    runs: { pollIntervalMs: 50, maxConcurrentPerTenant: 0, maxConcurrentPerUser: 0, ...runs },
    limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
  };
}

/**
 * Runs one statement as the database owner in a transaction scoped to `tenantId` as a tenant
 * admin and the scheduler, so row-level security lets every row of the tenant through even
 * when the owner is not a superuser (an external test server).
 */
export async function ownerQuery<T>(
  owner: pg.Client,
  tenantId: string,
  query: { readonly text: string; readonly values?: readonly unknown[] },
): Promise<T[]> {
  await owner.query('begin');
  try {
    await owner.query(
      `select set_config('brigade.tenant_id', $1, true),
              set_config('brigade.tenant_admin', 'on', true),
              set_config('brigade.scheduler', 'on', true)`,
      [tenantId],
    );
    const result = await owner.query(query.text, [...(query.values ?? [])]);
    return result.rows as T[];
  } finally {
    await owner.query('commit');
  }
}

/** What PostgreSQL holds for one tenant's budget: amounts in nano-USD, `open` reservations. */
export interface LedgerState {
  /** Sum of `cost` over the tenant's usage records. */
  readonly ledger: number;
  /** Sums of `used` and `reserved` over the policy's budget counters. */
  readonly used: number;
  readonly reserved: number;
  /** Reservations of the tenant still in status 'reserved'. */
  readonly open: number;
}

/** Reads the {@link LedgerState} of `tenantId` and its budget policy `policyId`. */
export async function ledgerOf(
  owner: pg.Client,
  ids: { readonly tenantId: string; readonly policyId: string },
): Promise<LedgerState> {
  const [row] = await ownerQuery<Record<keyof LedgerState, string>>(owner, ids.tenantId, {
    text: `select
        (select coalesce(sum(cost), 0) from brigade.usage_records where tenant_id = $1) as ledger,
        (select coalesce(sum(used), 0) from brigade.limit_counters
          where policy_id = $2 and kind = 'budget') as used,
        (select coalesce(sum(reserved), 0) from brigade.limit_counters
          where policy_id = $2 and kind = 'budget') as reserved,
        (select count(*) from brigade.budget_reservations
          where tenant_id = $1 and status = 'reserved') as open`,
    values: [ids.tenantId, ids.policyId],
  });
  return {
    ledger: Number(row?.ledger),
    used: Number(row?.used),
    reserved: Number(row?.reserved),
    open: Number(row?.open),
  };
}

/** A tenant whose member has a daily user-level budget, and the priced agent. */
export interface BudgetedMember {
  readonly tenantId: string;
  readonly member: { readonly userId: string; readonly keyId: string; readonly secret: string };
  readonly agentId: string;
  readonly policyId: string;
}

/**
 * Creates a tenant with an admin and a member, an agent on `mock:priced` with
 * `maxOutputTokens`, and a daily budget of `budgetNanos` on the member.
 */
export async function seedBudgetedMember(
  url: string,
  options: {
    readonly slug: string;
    readonly budgetNanos: number;
    readonly maxOutputTokens: number;
  },
): Promise<BudgetedMember> {
  const operator = apiClient(url, testOperatorKey);
  const tenantId = await seedTenant(operator, options.slug);
  const admin = apiClient(url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  const member = await seedUser(operator, { tenantId, role: 'member' });
  const agent = await admin.post<Created>('/v1/agents', {
    name: 'priced',
    model: 'mock:priced',
    maxOutputTokens: options.maxOutputTokens,
  });
  if (agent.status !== 201) throw new Error(`seed agent failed: ${JSON.stringify(agent.body)}`);
  const policy = await admin.post<Created>('/v1/policies', {
    level: 'user',
    subjectId: member.userId,
    limits: { budget: { amountUsd: options.budgetNanos / nanosPerUsd, period: 'day' } },
  });
  if (policy.status !== 201) throw new Error(`seed policy failed: ${JSON.stringify(policy.body)}`);
  return { tenantId, member, agentId: agent.body.id, policyId: policy.body.id };
}

/** Output tokens per call in the budget tests: one call's worst case is this × 1,000 nano-USD. */
export const maxOutputTokens = 100;
/** Nano-USD per output token at $1 per million tokens. */
export const nanosPerToken = 1000;
/** One call's worst case, in nano-USD. */
export const callNanos = maxOutputTokens * nanosPerToken;

export type RunBody = Created & { status: string; errorCode: string | null };
export type RunIds = { readonly threadId: string; readonly runId: string };
export type BudgetState = {
  policyId: string;
  limit: number;
  used: number;
  reserved: number;
  remaining: number;
};
export type Usage = { totals: { requests: number; errors: number; costUsd: number } };

/** USD to nano-USD. */
export function toNanos(usd: number): number {
  return Math.round(usd * nanosPerUsd);
}

/** The mock's chat-completion calls. */
export function chatCalls(mock: MockModelServer) {
  return mock.calls.filter((call) => call.path.endsWith('/chat/completions'));
}

/** Creates a thread and a run of `agentId` on it. */
export async function startRun(client: ApiClient, agentId: string): Promise<RunIds> {
  const thread = await client.post<Created>('/v1/threads', {});
  expect(thread.status).toBe(201);
  const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input: 'hello',
  });
  expect(run.status).toBe(201);
  return { threadId: thread.body.id, runId: run.body.id };
}

/** The caller's state of one budget, from getMyLimits. */
export async function budgetOf(
  client: ApiClient,
  policyId: string,
): Promise<BudgetState | undefined> {
  const limits = await client.get<{ budgets: BudgetState[] }>('/v1/me/limits');
  expect(limits.status).toBe(200);
  return limits.body.budgets.find((budget) => budget.policyId === policyId);
}
