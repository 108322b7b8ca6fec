import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Double-texting strategies under simultaneous requests, as a double click or a retrying client
 * sends them: a create that waited for its thread's lock must see the run the create before it
 * just committed. Before, ten `reject` creates at once on an idle thread made six to eight runs.
 */
let server: TestServer;
let client: ApiClient;
let agentId: string;

beforeAll(async () => {
  // Slow answers keep every run active while the creates race.
  server = await startTestServer({
    runs: { pollIntervalMs: 50 },
    models: { local: { tokenDelayMs: 50 } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'strategy-races');
  client = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'owner' })).secret);
  agentId = (await client.post<Created>('/v1/agents', { name: 'talker' })).body.id;
});

afterAll(async () => {
  await server?.stop();
});

const input = Array.from({ length: 40 }, (_, index) => `word${index}`).join(' ');

async function race(strategy: string, count: number) {
  const threadId = (await client.post<Created>('/v1/threads', {})).body.id;
  const answers = await Promise.all(
    Array.from({ length: count }, () =>
      client.post<Created & { code?: string }>(`/v1/threads/${threadId}/runs`, {
        agentId,
        input,
        strategy,
      }),
    ),
  );
  const runs = await client.get<{ data: { id: string; status: string }[] }>(
    `/v1/threads/${threadId}/runs`,
  );
  return { threadId, answers, runs: runs.body.data };
}

describe('simultaneous creates on one idle thread', () => {
  it('with reject: one run, every other create 409 thread_busy', async () => {
    for (let round = 0; round < 3; round += 1) {
      const { answers, runs } = await race('reject', 10);
      const created = answers.filter((answer) => answer.status === 201);
      expect(created).toHaveLength(1);
      expect(
        answers.filter((answer) => answer.status !== 201).map((answer) => answer.body.code),
      ).toEqual(Array.from({ length: 9 }, () => 'thread_busy'));
      expect(runs).toHaveLength(1);
    }
  });

  it('with interrupt: every run but the last created is cancelled; one stays active', async () => {
    const { threadId, answers } = await race('interrupt', 8);
    expect(answers.every((answer) => answer.status === 201)).toBe(true);
    // A running run told to stop ends when its executor hears it: wait for that.
    let runs: { id: string; status: string }[] = [];
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
      runs = (await client.get<{ data: typeof runs }>(`/v1/threads/${threadId}/runs`)).body.data;
      if (runs.filter((run) => run.status === 'cancelled').length >= 7) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const active = runs.filter((run) => ['queued', 'running'].includes(run.status));
    expect(active).toHaveLength(1);
    expect(runs.filter((run) => run.status === 'cancelled')).toHaveLength(7);
  });
});
