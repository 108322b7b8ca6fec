import { expect } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './test-brigade.ts';

/** Output tokens per call, at $1 per million output tokens: $0.0001 per call. */
export const outputTokens = 100;
export const callCostUsd = 0.0001;

export type Problem = { code: string; detail: string; [key: string]: unknown };
export type RunBody = Created & {
  status: string;
  errorCode: string | null;
  errorMessage: string | null;
};

/**
 * A server for the policy tests: the mock model answers every call with exactly
 * `outputTokens` output tokens and the input priced at zero (model `mock:priced`), so a
 * call's worst case and its actual cost are equal; one tenant with an owner, an admin and a
 * member, and an agent on the priced model.
 */
export interface PolicyWorld {
  readonly mock: MockModelServer;
  readonly server: TestServer;
  readonly operator: ApiClient;
  readonly owner: ApiClient;
  readonly admin: ApiClient;
  readonly member: ApiClient;
  readonly memberId: string;
  readonly memberKeyId: string;
  readonly tenantId: string;
  readonly agentId: string;
  /** Runs the agent once on a new thread of `client` and waits for its end. */
  run(client: ApiClient, input?: string): Promise<RunBody>;
  stop(): Promise<void>;
}

export async function startPolicyWorld(slug: string): Promise<PolicyWorld> {
  const mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  mock.setScript(() => ({
    text: 'ok',
    usage: { promptTokens: 7, completionTokens: outputTokens },
  }));
  const server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      models: { prices: { 'mock:priced': { inputPerMTok: 0, outputPerMTok: 1 } } },
      runs: { pollIntervalMs: 50 },
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, slug);
  const owner = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'owner' })).secret,
  );
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  const seeded = await seedUser(operator, { tenantId, role: 'member' });
  const agent = await admin.post<Created>('/v1/agents', {
    name: 'priced',
    model: 'mock:priced',
    maxOutputTokens: outputTokens,
  });
  expect(agent.status).toBe(201);
  const agentId = agent.body.id;
  return {
    mock,
    server,
    operator,
    owner,
    admin,
    member: apiClient(server.url, seeded.secret),
    memberId: seeded.userId,
    memberKeyId: seeded.keyId,
    tenantId,
    agentId,
    async run(client, input = 'hello') {
      const thread = await client.post<Created>('/v1/threads', {});
      const created = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
        agentId,
        input,
      });
      expect(created.status).toBe(201);
      return waitForRun<RunBody>(client, { threadId: thread.body.id, runId: created.body.id });
    },
    async stop() {
      await server.stop();
      await mock.close();
    },
  };
}
