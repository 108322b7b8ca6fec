import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  waitForRun,
} from './support/api-client.ts';
import { exportOf, rememberFor, remnantsOf, seedClient } from './support/data-rights-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';
import { newMasterKey } from './support/tool-fixtures.ts';

/**
 * The data subject's rights, through the public API: a user downloads everything that is
 * theirs (and nothing of anyone else's, and no secret), and a user is deleted with everything
 * that is theirs — by themselves, by an admin (members and viewers only) or by an owner (never
 * the tenant's last active owner).
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let agentId: string;
let owner: { userId: string; client: ApiClient };
let admin: { userId: string; client: ApiClient };

interface Problem {
  code: string;
}

type Item = Record<string, unknown>;

const seed = (role: string, tenant = tenantId) =>
  seedClient({ operator, url: server.url }, { tenantId: tenant, role });
const remember = (userId: string, value: string) =>
  rememberFor(server.database.url, { tenantId, userId, value });
const remnants = (userId: string) => remnantsOf(server.database.url, userId);

/** A completed model → calculator → model run on a new thread of `client`'s; its ids. */
async function completedRun(client: ApiClient, text: string) {
  const thread = await client.post<Created>('/v1/threads', { title: text });
  const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input: `${text} call calculator {"expression":"6*7"}`,
  });
  expect(run.status).toBe(201);
  const done = await waitForRun(client, { threadId: thread.body.id, runId: run.body.id });
  expect(done.status).toBe('completed');
  return { threadId: thread.body.id, runId: run.body.id };
}

beforeAll(async () => {
  server = await startTestServer(
    { models: { local: { tokenDelayMs: 0 } }, runs: { pollIntervalMs: 50 } },
    { env: { BRIGADE_MASTER_KEY: newMasterKey() } },
  );
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'rights');
  owner = await seed('owner');
  admin = await seed('admin');
  const agent = await admin.client.post<Created>('/v1/agents', {
    name: 'helper',
    tools: ['calculator'],
  });
  agentId = agent.body.id;
});

afterAll(async () => {
  await server?.stop();
});

describe('exportMyData', () => {
  it('hands a user everything that is theirs, and no secret', async () => {
    const alice = await seed('member');
    const canary = `alice-canary-${Date.now()}`;
    const secret = `credential-secret-${Date.now()}`;
    const ids = await completedRun(alice.client, canary);
    await alice.client.post('/v1/me/consents', { purpose: 'content_capture', version: '1' });
    const credential = await alice.client.post('/v1/me/credentials', { name: 'svc', secret });
    expect(credential.status).toBe(201);
    await remember(alice.userId, `${canary}-remembered`);
    // The run's trace spans are stored a moment after it ends.
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const trace = await alice.client.get<{ spans: unknown[] }>(
        `/v1/threads/${ids.threadId}/runs/${ids.runId}/trace`,
      );
      if (trace.body.spans?.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    const response = await exportOf(alice.client);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('content-disposition')).toContain('attachment');
    const body = response.body;
    expect(body).toMatchObject({ format: 'brigade-user-export/v1', userId: alice.userId });
    expect(body.complete).toBe(true);
    const section = (name: string) => body[name] as Item[];
    expect(section('profile')).toEqual([
      expect.objectContaining({ id: alice.userId, role: 'member' }),
    ]);
    expect(section('threads').map((thread) => thread['id'])).toEqual([ids.threadId]);
    expect(section('runs').map((run) => run['id'])).toEqual([ids.runId]);
    expect(JSON.stringify(section('messages'))).toContain(canary);
    expect(section('runSteps').length).toBeGreaterThanOrEqual(1);
    expect(section('consents')).toEqual([
      expect.objectContaining({ purpose: 'content_capture', status: 'granted' }),
    ]);
    expect(section('credentials')).toEqual([expect.objectContaining({ name: 'svc' })]);
    expect(section('apiKeys')).toEqual([expect.objectContaining({ id: alice.keyId })]);
    expect(section('usageRecords').length).toBeGreaterThanOrEqual(1);
    expect(section('memories')).toEqual([
      expect.objectContaining({ key: 'favourite', value: `${canary}-remembered` }),
    ]);
    expect(section('spans').some((span) => span['runId'] === ids.runId)).toBe(true);
    const actions = section('auditEvents').map((event) => event['action']);
    expect(actions).toEqual(expect.arrayContaining(['consent.granted', 'user.data_exported']));

    const text = JSON.stringify(body);
    for (const hidden of [secret, alice.secret, 'keyHash', 'ciphertext', 'fingerprint', 'last4']) {
      expect(text).not.toContain(hidden);
    }
  });

  it('holds nothing of another user’s, even an admin’s or the owner’s', async () => {
    const bob = await seed('member');
    const canary = `bob-canary-${Date.now()}`;
    const ids = await completedRun(bob.client, canary);
    await remember(bob.userId, canary);
    for (const client of [admin.client, owner.client, (await seed('member')).client]) {
      const text = JSON.stringify((await exportOf(client)).body);
      expect(text).not.toContain(canary);
      expect(text).not.toContain(ids.threadId);
      expect(text).not.toContain(ids.runId);
    }
  });

  it('pages through large sections without losing or repeating an item', async () => {
    const carol = await seed('member');
    const created = new Set<string>();
    for (let batch = 0; batch < 11; batch += 1) {
      const threads = await Promise.all(
        Array.from({ length: 50 }, () => carol.client.post<Created>('/v1/threads', {})),
      );
      for (const thread of threads) created.add(thread.body.id);
    }
    const exported = ((await exportOf(carol.client)).body['threads'] as Item[]).map(
      (thread) => thread['id'] as string,
    );
    expect(exported).toHaveLength(550);
    expect(new Set(exported)).toEqual(created);
  });

  it('is refused to the operator and to a key without the account:export-own scope', async () => {
    const operatorExport = await operator.get<Problem>('/v1/me/export');
    expect(operatorExport.status).toBe(403);
    const dave = await seed('member');
    const narrow = await dave.client.post<Created>(
      `/v1/tenants/${tenantId}/users/${dave.userId}/api-keys`,
      { name: 'narrow', scopes: ['thread:read'] },
    );
    expect(narrow.status).toBe(201);
    const refused = await apiClient(server.url, narrow.body.secret).get<Problem>('/v1/me/export');
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('forbidden');
  });
});

describe('deleteUser', () => {
  const path = (userId: string, query = '') => `/v1/tenants/${tenantId}/users/${userId}${query}`;

  it('lets a user delete themselves, with everything that is theirs, and audits it', async () => {
    const erin = await seed('member');
    const ids = await completedRun(erin.client, 'erin');
    await erin.client.post('/v1/me/consents', { purpose: 'content_capture', version: '1' });
    await erin.client.post('/v1/me/credentials', { name: 'svc', secret: 'erin-secret-value' });
    await remember(erin.userId, 'erin remembers');
    const policy = await owner.client.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: erin.userId,
      limits: { runsPerDay: 100 },
    });
    expect(policy.status).toBe(201);
    // Wait for the run's spans to be stored, so the erasure has some to delete.
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const trace = await erin.client.get<{ spans: unknown[] }>(
        `/v1/threads/${ids.threadId}/runs/${ids.runId}/trace`,
      );
      if (trace.body.spans?.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect((await remnants(erin.userId))['spans']).toBeGreaterThan(0);

    const deleted = await erin.client.request(
      'DELETE',
      path(erin.userId, '?reason=gdpr%20request'),
    );
    expect(deleted.status).toBe(204);
    expect((await erin.client.get('/v1/me')).status).toBe(401);
    expect((await admin.client.get(path(erin.userId))).status).toBe(404);
    expect((await owner.client.get(`/v1/policies/${policy.body.id}`)).status).toBe(404);
    const left = await remnants(erin.userId);
    // Usage records stay (the tenant's bill; ids and counts, no content).
    expect(left).toMatchObject({
      users: 0,
      memberships: 0,
      api_keys: 0,
      threads: 0,
      messages: 0,
      runs: 0,
      run_events: 0,
      run_steps: 0,
      run_queue: 0,
      consents: 0,
      credentials: 0,
      vault_user_keys: 0,
      spans: 0,
      memories: 0,
      policies: 0,
    });
    expect(left['usage_records']).toBeGreaterThan(0);
    // Spans still buffered (the deleting request's own among them) are flushed within ~1 s,
    // and must not bring the user's data back.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await remnants(erin.userId))['spans']).toBe(0);
    const events: Item[] = [];
    for (let after = '0'; ; ) {
      const page = await admin.client.get<{ data: Item[]; nextCursor: string | null }>(
        `/v1/tenants/${tenantId}/audit-events?limit=500&after=${after}`,
      );
      events.push(...page.body.data.filter((event) => event['targetId'] === erin.userId));
      if (page.body.nextCursor === null) break;
      after = page.body.nextCursor;
    }
    expect(events.map((event) => [event['action'], event['reason']])).toEqual(
      expect.arrayContaining([
        ['user.deletion_started', 'gdpr request'],
        ['user.deleted', 'gdpr request'],
      ]),
    );
  });

  it('lets an admin delete members and viewers, but not admins or owners', async () => {
    const frank = await seed('member');
    const grace = await seed('viewer');
    const other = await seed('admin');
    expect((await admin.client.request('DELETE', path(frank.userId))).status).toBe(204);
    expect((await admin.client.request('DELETE', path(grace.userId))).status).toBe(204);
    expect((await admin.client.request('DELETE', path(other.userId))).status).toBe(403);
    expect((await admin.client.request('DELETE', path(owner.userId))).status).toBe(403);
    expect((await other.client.get('/v1/me')).status).toBe(200);
  });

  it('is refused to members, to other tenants and for unknown users', async () => {
    const heidi = await seed('member');
    const ivan = await seed('member');
    const refused = await heidi.client.request<Problem>('DELETE', path(ivan.userId));
    expect(refused.status).toBe(404);
    expect((await ivan.client.get('/v1/me')).status).toBe(200);
    const elsewhere = await seedTenant(operator, 'rights-other');
    const stranger = await seed('owner', elsewhere);
    const foreign = await stranger.client.request<Problem>('DELETE', path(ivan.userId));
    expect(foreign.status).toBe(404);
    expect(foreign.body.code).toBe('tenant_not_found');
    const unknown = await owner.client.request<Problem>(
      'DELETE',
      path('00000000-0000-4000-8000-000000000000'),
    );
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('user_not_found');
    expect((await owner.client.request('DELETE', path('not-a-uuid'))).status).toBe(404);
    const long = await owner.client.request<Problem>(
      'DELETE',
      path(ivan.userId, `?reason=${'x'.repeat(501)}`),
    );
    expect(long.status).toBe(422);
    expect((await owner.client.request('DELETE', path(ivan.userId, '?force=1'))).status).toBe(422);
    expect((await ivan.client.get('/v1/me')).status).toBe(200);
  });

  it('never deletes the last active owner, whoever asks', async () => {
    const tenant = await seedTenant(operator, 'rights-owners');
    const first = await seed('owner', tenant);
    const ownerPath = (userId: string) => `/v1/tenants/${tenant}/users/${userId}`;
    for (const client of [first.client, operator]) {
      const refused = await client.request<Problem>('DELETE', ownerPath(first.userId));
      expect(refused.status).toBe(409);
    }
    expect((await first.client.get('/v1/me')).status).toBe(200);
    const second = await seed('owner', tenant);
    expect((await first.client.request('DELETE', ownerPath(first.userId))).status).toBe(204);
    expect((await second.client.request('DELETE', ownerPath(second.userId))).status).toBe(409);
  });

  it('cancels a user’s run in flight and leaves the server serving everyone else', async () => {
    const slow = await admin.client.post<Created>('/v1/agents', {
      name: 'slow',
      model: 'local',
    });
    expect(slow.status).toBe(201);
    const judy = await seed('member');
    const thread = await judy.client.post<Created>('/v1/threads', {});
    const run = await judy.client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: slow.body.id,
      input: 'x '.repeat(2_000),
    });
    expect(run.status).toBe(201);
    expect((await judy.client.request('DELETE', path(judy.userId))).status).toBe(204);
    const left = await remnants(judy.userId);
    expect(left).toMatchObject({ runs: 0, run_queue: 0, threads: 0 });
    const kim = await seed('member');
    await completedRun(kim.client, 'after the erasure');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await remnants(judy.userId)).toMatchObject({ runs: 0, run_events: 0, run_queue: 0 });
  });
});
