import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/observability/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A client hanging up on a non-streaming chat completion: the call is released at no cost (no
 * output was seen, on the `local` model as with a provider), and the server logs no error.
 */
let server: TestServer;
let operator: ApiClient;
let admin: ApiClient;
let tenantId: string;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  server = await startTestServer({ models: { local: { tokenDelayMs: 150 } } }, { logger });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'disconnects');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
});

afterAll(async () => {
  await server?.stop();
});

type Budget = { used: number; reserved: number };

/** A member with a daily budget, and the state of that budget. */
async function budgetedMember() {
  const seeded = await seedUser(operator, { tenantId, role: 'member' });
  const member = apiClient(server.url, seeded.secret);
  const policy = await admin.post<Created>('/v1/policies', {
    level: 'user',
    subjectId: seeded.userId,
    limits: { budget: { amountUsd: 0.01, period: 'day' } },
  });
  expect(policy.status).toBe(201);
  const budget = async () =>
    (await member.get<{ budgets: Budget[] }>('/v1/me/limits')).body.budgets[0];
  return { secret: seeded.secret, member, budget };
}

/**
 * Starts a non-streaming chat completion on the slow `local` model and hangs up mid-answer
 * (its reservation held, some of its words generated); resolves once the reservation is gone.
 */
async function hangUpMidAnswer(caller: Awaited<ReturnType<typeof budgetedMember>>) {
  const { secret, budget } = caller;
  const controller = new AbortController();
  const call = fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    signal: controller.signal,
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'local',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'one two three four five six seven eight' }],
    }),
  }).catch((error: Error) => error.name);
  for (let attempt = 0; attempt < 100 && ((await budget())?.reserved ?? 0) === 0; attempt += 1)
    await new Promise((resolve) => setTimeout(resolve, 20));
  expect((await budget())?.reserved).toBeGreaterThan(0);
  await new Promise((resolve) => setTimeout(resolve, 450));
  controller.abort();
  expect(await call).toBe('AbortError');
  for (let attempt = 0; attempt < 100 && ((await budget())?.reserved ?? 1) > 0; attempt += 1)
    await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('a client that disconnects from a non-streaming chat completion', () => {
  it('is not charged for the local model’s call: no output was seen', async () => {
    const caller = await budgetedMember();
    await hangUpMidAnswer(caller);
    expect(await caller.budget()).toMatchObject({ used: 0, reserved: 0 });
    const usage = await caller.member.get<{ totals: { requests: number; costUsd: number } }>(
      '/v1/usage',
    );
    expect(usage.body.totals).toMatchObject({ requests: 1, costUsd: 0 });
  });

  it('is logged at debug level without a stack, not as an unhandled error', async () => {
    const caller = await budgetedMember();
    const gone = () =>
      lines.filter((line) => line['msg'] === 'client disconnected before the response');
    const before = gone().length;
    await hangUpMidAnswer(caller);
    for (let attempt = 0; attempt < 100 && gone().length === before; attempt += 1)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(gone()).toHaveLength(before + 1);
    expect(gone().at(-1)).toMatchObject({ level: 'debug', path: '/v1/chat/completions' });
    expect(gone().at(-1)).not.toHaveProperty('err');
    expect(lines.filter((line) => line['level'] === 'error')).toEqual([]);
  });
});
