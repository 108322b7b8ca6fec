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
 * The built-in memory tools through the public API, with the built-in `tool-loop` core and the
 * local model (`call <tool> {json}`): notes a run saves are the run's user's (and thread's),
 * long-term notes need the user's consent, and another user — of the same tenant, on the same
 * agent — reaches none of them however the model names keys.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let agentId: string;

const memoryTools = ['memory_save', 'memory_list', 'memory_delete'];

beforeAll(async () => {
  server = await startTestServer({ runs: { pollIntervalMs: 50 } });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'memory-tools');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  const agent = await admin.post<Created>('/v1/agents', {
    name: 'note-taker',
    model: 'local',
    tools: memoryTools,
  });
  expect(agent.status, JSON.stringify(agent.body)).toBe(201);
  agentId = agent.body.id;
});

afterAll(async () => {
  await server?.stop();
});

async function member() {
  const client = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'member' })).secret,
  );
  const threadId = (await client.post<Created>('/v1/threads', {})).body.id;
  return { client, threadId };
}

/** Runs `call <tool> {args}` on the thread; the answer the local model gives after the tool. */
async function call(
  user: { client: ApiClient; threadId: string },
  tool: string,
  args: Record<string, unknown>,
): Promise<string | undefined> {
  const run = await user.client.post<Created>(`/v1/threads/${user.threadId}/runs`, {
    agentId,
    input: `call ${tool} ${JSON.stringify(args)}`,
  });
  expect(run.status, JSON.stringify(run.body)).toBe(201);
  const done = await waitForRun(user.client, { threadId: user.threadId, runId: run.body.id });
  expect(done.status).toBe('completed');
  const messages = await user.client.get<{ data: { content: { text?: string }[] }[] }>(
    `/v1/threads/${user.threadId}/messages`,
  );
  return messages.body.data.at(-1)?.content[0]?.text;
}

interface Listed {
  data: { scope: string; threadId: string | null; key: string; value: unknown; runId: string }[];
}

describe('the built-in memory tools', () => {
  it('are offered like any built-in tool', async () => {
    const user = await member();
    const tools = await user.client.get<{ data: { name: string; kind: string }[] }>('/v1/tools');
    for (const name of memoryTools)
      expect(tools.body.data).toContainEqual(expect.objectContaining({ name, kind: 'builtin' }));
  });

  it("save, list and delete the run's thread's notes; another thread and another user see none", async () => {
    const alice = await member();
    expect(
      await call(alice, 'memory_save', { key: 'pref/lang', note: 'answers in French' }),
    ).toMatch(/memory_save returned: .*pref\/lang/);
    const own = await alice.client.get<Listed>('/v1/me/memories?scope=thread');
    expect(own.body.data).toEqual([
      expect.objectContaining({
        scope: 'thread',
        threadId: alice.threadId,
        key: 'pref/lang',
        value: 'answers in French',
      }),
    ]);
    expect(await call(alice, 'memory_list', { prefix: 'pref' })).toContain('answers in French');

    // The same user in another thread: thread notes stay with their thread.
    const elsewhere = {
      client: alice.client,
      threadId: (await alice.client.post<Created>('/v1/threads', {})).body.id,
    };
    expect(await call(elsewhere, 'memory_list', {})).not.toContain('French');

    // Another member of the tenant, on the same agent, asking for the same key and every key.
    const mallory = await member();
    expect(await call(mallory, 'memory_list', {})).not.toContain('French');
    expect(await call(mallory, 'memory_list', { scope: 'user' })).not.toContain('French');
    expect(await call(mallory, 'memory_delete', { key: 'pref/lang' })).toContain('"deleted":false');
    expect((await alice.client.get<Listed>('/v1/me/memories')).body.data).toHaveLength(1);

    expect(await call(alice, 'memory_delete', { key: 'pref/lang' })).toContain('"deleted":true');
    expect((await alice.client.get<Listed>('/v1/me/memories')).body.data).toEqual([]);
  });

  it('keep long-term notes across threads only with the user’s consent', async () => {
    const bob = await member();
    const refused = await call(bob, 'memory_save', {
      key: 'name',
      note: 'Bob, prefers short answers',
      scope: 'user',
    });
    expect(refused).toMatch(/memory_save failed: .*consent/i);
    expect((await bob.client.get<Listed>('/v1/me/memories')).body.data).toEqual([]);

    const consent = await bob.client.post('/v1/me/consents', {
      purpose: 'long_term_memory',
      version: '1',
    });
    expect(consent.status).toBe(201);
    await call(bob, 'memory_save', {
      key: 'name',
      note: 'Bob, prefers short answers',
      scope: 'user',
    });
    const later = {
      client: bob.client,
      threadId: (await bob.client.post<Created>('/v1/threads', {})).body.id,
    };
    expect(await call(later, 'memory_list', { scope: 'user' })).toContain('prefers short answers');
    const listed = await bob.client.get<Listed>('/v1/me/memories?scope=user');
    expect(listed.body.data).toEqual([
      expect.objectContaining({ scope: 'user', threadId: null, key: 'name' }),
    ]);
  });

  it('refuse keys and notes the schema does not allow, writing nothing', async () => {
    const carol = await member();
    expect(await call(carol, 'memory_save', { key: '../etc', note: 'x' })).toMatch(
      /memory_save failed: .*Invalid arguments/,
    );
    expect(await call(carol, 'memory_save', { key: 'k', note: 'x'.repeat(4_001) })).toMatch(
      /memory_save failed: .*Invalid arguments/,
    );
    expect((await carol.client.get<Listed>('/v1/me/memories')).body.data).toEqual([]);
  });
});
