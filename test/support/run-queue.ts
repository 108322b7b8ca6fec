import pg from 'pg';
import { expect } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  terminalStatuses,
} from './api-client.ts';
import { testOperatorKey } from './test-brigade.ts';

/**
 * A connection as the database owner that sees every tenant's queue entries and runs and may
 * manage policies: the owner is subject to row-level security too, so it takes the scheduler
 * and operator scopes for its session.
 */
export async function ownerSeeingAll(databaseUrl: string): Promise<pg.Client> {
  const owner = new pg.Client({ connectionString: databaseUrl });
  await owner.connect();
  await owner.query(
    `select set_config('brigade.scheduler', 'on', false), set_config('brigade.operator', 'on', false)`,
  );
  return owner;
}

/** A run resource as the queue tests read it. */
export interface RunBody {
  readonly id: string;
  readonly status: string;
  readonly priority: 'interactive' | 'batch';
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly completedAt: string | null;
  readonly queueWaitMs: number | null;
}

/** A queued run as the tests track it: who queued it, where, and a label to group by. */
export interface Queued {
  readonly client: ApiClient;
  readonly threadId: string;
  readonly runId: string;
  readonly label: string;
}

/** Config that lifts the request rate limits (queue tests send hundreds of requests). */
export const unlimitedRequests = {
  limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
};

/** Run input: the local model answers it in 8 tokens. */
export const runInput = 'one two three four five six';

/** Creates, on the server at `url`, a tenant with `users` users (the first an admin) and an agent. */
export async function seedTenantUsers(
  url: string,
  options: { readonly slug: string; readonly users: number },
) {
  const operator = apiClient(url, testOperatorKey);
  const tenantId = await seedTenant(operator, options.slug);
  const clients: ApiClient[] = [];
  for (let index = 0; index < options.users; index += 1) {
    const role = index === 0 ? 'admin' : 'member';
    clients.push(apiClient(url, (await seedUser(operator, { tenantId, role })).secret));
  }
  const [admin] = clients;
  if (admin === undefined) throw new Error('no users');
  const agent = await admin.post<Created>('/v1/agents', { name: 'echo' });
  expect(agent.status).toBe(201);
  return { tenantId, clients, admin, agentId: agent.body.id };
}

/**
 * Queues `runsPerThread` runs on each of `threads` new threads of `client` (strategy enqueue:
 * a thread's runs execute one at a time), threads in parallel, each thread's runs in order.
 */
export async function enqueue(options: {
  readonly client: ApiClient;
  readonly agentId: string;
  readonly threads: number;
  readonly runsPerThread: number;
  readonly label: string;
  readonly priority?: 'interactive' | 'batch';
}): Promise<Queued[]> {
  const { client } = options;
  const perThread = await Promise.all(
    Array.from({ length: options.threads }, async () => {
      const thread = await client.post<Created>('/v1/threads', {});
      const queued: Queued[] = [];
      for (let index = 0; index < options.runsPerThread; index += 1) {
        const run = await client.post<RunBody>(`/v1/threads/${thread.body.id}/runs`, {
          agentId: options.agentId,
          input: runInput,
          ...(options.priority === undefined ? {} : { priority: options.priority }),
        });
        expect(run.status).toBe(201);
        expect(run.body.priority).toBe(options.priority ?? 'interactive');
        // Not claimed yet (the queue tests queue runs before any worker runs).
        if (run.body.status === 'queued') expect(run.body.queueWaitMs).toBeNull();
        queued.push({ client, threadId: thread.body.id, runId: run.body.id, label: options.label });
      }
      return queued;
    }),
  );
  return perThread.flat();
}

/** A finished run: its resource and how it was queued. */
export type FinishedRun = RunBody & Queued;

/** Waits until every run is terminal (polling their threads' run lists) and reads them. */
export async function finished(runs: readonly Queued[]): Promise<Map<string, FinishedRun>> {
  const threads = new Map<string, Queued>();
  for (const run of runs) threads.set(run.threadId, run);
  const queued = new Map(runs.map((run) => [run.runId, run]));
  for (let attempt = 0; attempt < 400; attempt += 1) {
    const lists = await Promise.all(
      [...threads.values()].map((run) =>
        run.client.get<{ data: RunBody[] }>(`/v1/threads/${run.threadId}/runs`),
      ),
    );
    const all = lists.flatMap((list) => list.body.data).filter((run) => queued.has(run.id));
    if (
      all.length === queued.size &&
      all.every((run) => (terminalStatuses as readonly string[]).includes(run.status))
    ) {
      return new Map(all.map((run) => [run.id, { ...run, ...(queued.get(run.id) as Queued) }]));
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error('runs did not finish');
}

/** Runs in completion order. */
export function byCompletion(runs: Map<string, FinishedRun>): FinishedRun[] {
  return [...runs.values()].sort(
    (a, b) => Date.parse(a.completedAt ?? '') - Date.parse(b.completedAt ?? ''),
  );
}

/** Position (0-based) in `order` of the `nth` (1-based) run labelled `label`. */
export function positionOf(
  order: readonly { label: string }[],
  label: string,
  nth: number,
): number {
  let seen = 0;
  for (const [index, run] of order.entries()) {
    if (run.label === label) seen += 1;
    if (seen === nth) return index;
  }
  return order.length;
}

/** The most runs that overlapped in time, from their start and completion times. */
export function mostAtOnce(runs: readonly FinishedRun[]): number {
  const points = runs
    .flatMap((run) => [
      { at: Date.parse(run.startedAt ?? ''), delta: 1 },
      { at: Date.parse(run.completedAt ?? ''), delta: -1 },
    ])
    .sort((a, b) => a.at - b.at || a.delta - b.delta);
  let running = 0;
  let most = 0;
  for (const point of points) {
    running += point.delta;
    most = Math.max(most, running);
  }
  return most;
}
