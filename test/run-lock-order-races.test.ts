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

/**
 * Requests that change a run while its executor writes to it must take their locks in an order
 * the executor can never hold against them; otherwise PostgreSQL breaks the deadlock by rolling
 * one back, and the client gets a 503 for a request that was valid (found by a black-box test:
 * two or three of eight simultaneous `interrupt` creates, and most approval decisions sent with
 * a cancel).
 */
let server: TestServer;
let client: ApiClient;
let talker: string;
let gated: string;

beforeAll(async () => {
  // Quick answers: the interrupted runs finish (and write their messages) during the burst.
  server = await startTestServer({
    runs: { pollIntervalMs: 50 },
    models: { local: { tokenDelayMs: 2 } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'lock-order-races');
  client = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'owner' })).secret);
  talker = (await client.post<Created>('/v1/agents', { name: 'talker' })).body.id;
  gated = (
    await client.post<Created>('/v1/agents', {
      name: 'gated',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    })
  ).body.id;
});

afterAll(async () => {
  await server?.stop();
});

describe('lock order against a run that is writing', () => {
  it('simultaneous interrupt and rollback creates all succeed while the runs they stop finish', async () => {
    const statuses: number[] = [];
    for (const strategy of ['interrupt', 'rollback', 'interrupt', 'rollback', 'interrupt']) {
      const threadId = (await client.post<Created>('/v1/threads', {})).body.id;
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, index) =>
          client.post<Created & { code?: string }>(`/v1/threads/${threadId}/runs`, {
            agentId: talker,
            input: `message ${index}`,
            strategy,
          }),
        ),
      );
      statuses.push(...answers.map((answer) => answer.status));
    }
    expect(statuses.filter((status) => status !== 201)).toEqual([]);
  });

  it('an approval decision sent with a cancel gets 200 or 409, never a 503', async () => {
    const decisions: number[] = [];
    for (let round = 0; round < 6; round += 1) {
      const threadId = (await client.post<Created>('/v1/threads', {})).body.id;
      const runId = (
        await client.post<Created>(`/v1/threads/${threadId}/runs`, {
          agentId: gated,
          input: 'call calculator {"expression":"2+3"}',
        })
      ).body.id;
      await waitForRun(client, { threadId, runId }, ['requires_action']);
      const pending = await client.get<{ data: { id: string; runId: string }[] }>(
        '/v1/approvals?limit=100',
      );
      const approval = pending.body.data.find((entry) => entry.runId === runId);
      if (approval === undefined) throw new Error('no pending approval');
      const [decided, cancelled] = await Promise.all([
        client.post(`/v1/approvals/${approval.id}/decision`, { decision: 'approve' }),
        client.post(`/v1/threads/${threadId}/runs/${runId}/cancel`, {}),
      ]);
      decisions.push(decided.status);
      expect([202, 409]).toContain(cancelled.status);
      const final = await waitForRun(client, { threadId, runId });
      // Whichever came first decides: a run cancelled while parked, or approved and then
      // cancelled while running (or finished before the cancel reached it).
      expect(['cancelled', 'completed']).toContain(final.status);
    }
    expect(decisions.filter((status) => status !== 200 && status !== 409)).toEqual([]);
  });
});
