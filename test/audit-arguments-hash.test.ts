import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';
import { newMasterKey } from './support/tool-fixtures.ts';

/**
 * The arguments hash of `tool.called` and of approvals is keyed per tenant: an owner or admin
 * reading the audit log cannot confirm a guess of a call's arguments by hashing it, equal calls
 * of one tenant still correlate, and approvals still bind to the exact call — including ones
 * requested before the hash was keyed, which keep their plain SHA-256.
 */

interface Tenant {
  readonly id: string;
  readonly admin: ApiClient;
  readonly member: ApiClient;
  readonly freeAgentId: string;
  readonly carefulAgentId: string;
}

interface AuditEvent {
  readonly action: string;
  readonly targetId: string;
  readonly data: Record<string, unknown>;
}

interface ApprovalBody {
  readonly id: string;
  readonly runId: string;
  readonly arguments: Record<string, unknown>;
  readonly argumentsHash: string;
}

const keyedPattern = /^hmac-sha256:[0-9a-f]{64}$/;
/** The plain SHA-256 anyone can compute from a guess (the canonical JSON is written out). */
const plainSha256 = (canonical: string) => createHash('sha256').update(canonical).digest('hex');

let server: TestServer;
let first: Tenant;
let second: Tenant;

async function seedWorld(operator: ApiClient, slug: string): Promise<Tenant> {
  const id = await seedTenant(operator, slug);
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: id, role: 'admin' })).secret,
  );
  const member = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: id, role: 'member' })).secret,
  );
  const free = await admin.post<Created>('/v1/agents', { name: 'free', tools: ['calculator'] });
  const careful = await admin.post<Created>('/v1/agents', {
    name: 'careful',
    tools: ['calculator'],
    approvalRequiredTools: ['calculator'],
  });
  return { id, admin, member, freeAgentId: free.body.id, carefulAgentId: careful.body.id };
}

/** Starts a run that calls the calculator with `expression`; waits for `statuses`. */
async function calculate(
  tenant: Tenant,
  request: { readonly agentId: string; readonly expression: string; readonly statuses: string[] },
) {
  const thread = await tenant.member.post<Created>('/v1/threads', {});
  const run = await tenant.member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId: request.agentId,
    input: `call calculator {"expression":"${request.expression}"}`,
  });
  const ids = { threadId: thread.body.id, runId: run.body.id };
  await waitForRun(tenant.member, ids, request.statuses);
  return ids;
}

/** A run waiting for approval of a calculator call, and its pending approval. */
async function pendingCalculation(tenant: Tenant, expression: string) {
  const ids = await calculate(tenant, {
    agentId: tenant.carefulAgentId,
    expression,
    statuses: ['requires_action'],
  });
  const pending = await tenant.member.get<{ data: ApprovalBody[] }>('/v1/approvals');
  const approval = pending.body.data.find((item) => item.runId === ids.runId);
  if (approval === undefined) throw new Error('no pending approval');
  return { ids, approval };
}

/** The tenant's audit events of `action`, read through the audit API as its admin. */
async function audited(tenant: Tenant, action: string): Promise<AuditEvent[]> {
  const log = await tenant.admin.get<{ data: AuditEvent[] }>(
    `/v1/tenants/${tenant.id}/audit-events?limit=500`,
  );
  expect(log.status).toBe(200);
  return log.body.data.filter((event) => event.action === action);
}

/** The arguments hash `tool.called` recorded for the run's one tool call. */
async function toolCallHash(tenant: Tenant, runId: string): Promise<unknown> {
  const events = (await audited(tenant, 'tool.called')).filter(
    (event) => event.data['runId'] === runId,
  );
  expect(events).toHaveLength(1);
  return events[0]?.data['argumentsHash'];
}

beforeAll(async () => {
  // Server mode with a vault master key; embedded mode's generated key file and key-provider
  // plugins are covered in embedded-runs.test.ts and tools-key-provider.test.ts.
  server = await startTestServer(
    { runs: { pollIntervalMs: 50 } },
    { env: { BRIGADE_MASTER_KEY: newMasterKey() } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  first = await seedWorld(operator, 'hash-first');
  second = await seedWorld(operator, 'hash-second');
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

describe('the arguments hash in the audit log', () => {
  it('is keyed: not the plain SHA-256, equal for equal calls in a tenant, unrelated across tenants', async () => {
    const request = { agentId: first.freeAgentId, expression: '6*7', statuses: ['completed'] };
    const once = await calculate(first, request);
    const again = await calculate(first, request);
    const elsewhere = await calculate(second, { ...request, agentId: second.freeAgentId });
    const hash = await toolCallHash(first, once.runId);
    expect(hash).toMatch(keyedPattern);
    const guess = plainSha256('{"expression":"6*7"}');
    expect(hash).not.toBe(guess);
    expect(JSON.stringify(await audited(first, 'tool.called'))).not.toContain(guess);
    expect(await toolCallHash(first, again.runId)).toBe(hash);
    const other = await toolCallHash(second, elsewhere.runId);
    expect(other).toMatch(keyedPattern);
    expect(other).not.toBe(hash);
  });

  it('binds an approval to the keyed hash, and the call runs once approved', async () => {
    const { ids, approval } = await pendingCalculation(first, '6*7');
    expect(approval.argumentsHash).toMatch(keyedPattern);
    // The same call as the free agent's in the test before: the same hash, so they correlate.
    const free = await calculate(first, {
      agentId: first.freeAgentId,
      expression: '6*7',
      statuses: ['completed'],
    });
    expect(approval.argumentsHash).toBe(await toolCallHash(first, free.runId));
    const stale = await first.member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: `hmac-sha256:${'0'.repeat(64)}`,
    });
    expect(stale.status).toBe(409);
    const decided = await first.member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: approval.argumentsHash,
    });
    expect(decided.status, JSON.stringify(decided.body)).toBe(200);
    await waitForRun(first.member, ids, ['completed']);
    expect(await toolCallHash(first, ids.runId)).toBe(approval.argumentsHash);
    const decision = (await audited(first, 'approval.decided')).find(
      (event) => event.targetId === approval.id,
    );
    expect(decision?.data).toMatchObject({ argumentsHash: approval.argumentsHash, edited: false });
  });

  it('keys the hash of edited arguments, which is what tool.called records', async () => {
    const { ids, approval } = await pendingCalculation(first, '2+2');
    const edited = await first.member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'edit',
      arguments: { expression: '10*10' },
    });
    expect(edited.status, JSON.stringify(edited.body)).toBe(200);
    await waitForRun(first.member, ids, ['completed']);
    const decision = (await audited(first, 'approval.decided')).find(
      (event) => event.targetId === approval.id,
    );
    const editedHash = decision?.data['editedArgumentsHash'];
    expect(editedHash).toMatch(keyedPattern);
    expect(editedHash).not.toBe(plainSha256('{"expression":"10*10"}'));
    expect(await toolCallHash(first, ids.runId)).toBe(editedHash);
  });

  it('accepts the plain SHA-256 of the arguments a client computed itself', async () => {
    const { ids, approval } = await pendingCalculation(first, '3*3');
    const decided = await first.member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: plainSha256('{"expression":"3*3"}'),
    });
    expect(decided.status, JSON.stringify(decided.body)).toBe(200);
    await waitForRun(first.member, ids, ['completed']);
  });

  it('still decides an approval requested before hashes were keyed, by its plain hash', async () => {
    const { ids, approval } = await pendingCalculation(first, '7*6');
    // As it was stored before the change: the plain SHA-256 (written here as the owner).
    const legacy = plainSha256('{"expression":"7*6"}');
    const owner = new pg.Client({ connectionString: server.database.url });
    await owner.connect();
    try {
      await owner.query('update brigade.approvals set arguments_hash = $1 where id = $2', [
        legacy,
        approval.id,
      ]);
    } finally {
      await owner.end();
    }
    const listed = await first.member.get<{ data: ApprovalBody[] }>('/v1/approvals');
    expect(listed.body.data.find((item) => item.id === approval.id)?.argumentsHash).toBe(legacy);
    const stale = await first.member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: '0'.repeat(64),
    });
    expect(stale.status).toBe(409);
    const decided = await first.member.post(`/v1/approvals/${approval.id}/decision`, {
      decision: 'approve',
      argumentsHash: legacy,
    });
    expect(decided.status, JSON.stringify(decided.body)).toBe(200);
    await waitForRun(first.member, ids, ['completed']);
    const decision = (await audited(first, 'approval.decided')).find(
      (event) => event.targetId === approval.id,
    );
    expect(decision?.data).toMatchObject({ argumentsHash: legacy, status: 'approved' });
    // What the call records now is keyed.
    expect(await toolCallHash(first, ids.runId)).toMatch(keyedPattern);
  });
});
