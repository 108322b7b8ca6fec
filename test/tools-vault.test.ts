import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { parseMasterKey } from '../src/domain/tools/vault-crypto.ts';
import { createCredentialStore } from '../src/storage/tools/credential-store.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import {
  type LoggedServer,
  newMasterKey,
  runOnce,
  startLoggedServer,
  startUpstream,
} from './support/tool-fixtures.ts';

const canaryA = `canary-A-${'7'.repeat(24)}`;
const canaryB = `canary-B-${'8'.repeat(24)}`;
const sharedCanary = `canary-shared-${'9'.repeat(20)}`;
const masterKey = newMasterKey();

let server: LoggedServer;
let upstream: Awaited<ReturnType<typeof startUpstream>>;
let tenantId: string;
let admin: ApiClient;
let alice: ApiClient;
let bob: ApiClient;
let carol: ApiClient;
let aliceId: string;
let agentId: string;
const responses: string[] = [];

/** Every response body a test saw, for the canary check at the end. */
function keep<T>(response: T): T {
  responses.push(JSON.stringify(response));
  return response;
}

beforeAll(async () => {
  upstream = await startUpstream();
  server = await startLoggedServer({}, { BRIGADE_MASTER_KEY: masterKey });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'vault');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  const aliceUser = await seedUser(operator, { tenantId, role: 'member' });
  aliceId = aliceUser.userId;
  alice = apiClient(server.url, aliceUser.secret);
  bob = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  carol = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  for (const [name, credential] of [
    ['whoami', 'svc'],
    ['team_whoami', 'team'],
  ] as const) {
    const tool = await admin.post('/v1/tools', {
      name,
      description: 'Asks the service who the caller is.',
      risk: 'read',
      method: 'GET',
      urlTemplate: `${upstream.url}/whoami/{q}`,
      inputSchema: {
        type: 'object',
        properties: { q: { type: 'string', maxLength: 20 } },
        required: ['q'],
        additionalProperties: false,
      },
      auth: { credential, scheme: 'bearer' },
    });
    expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  }
  const agent = await admin.post<Created>('/v1/agents', {
    name: 'vaulted',
    tools: ['whoami', 'team_whoami'],
  });
  expect(agent.status, JSON.stringify(agent.body)).toBe(201);
  agentId = agent.body.id;
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await upstream?.close();
});

describe('the credentials vault', () => {
  it('stores a secret and lists only metadata, never the secret', async () => {
    const put = keep(
      await alice.post('/v1/me/credentials', {
        name: 'svc',
        kind: 'bearer_token',
        secret: canaryA,
      }),
    );
    expect(put.status).toBe(201);
    expect(put.body).toMatchObject({
      name: 'svc',
      kind: 'bearer_token',
      scope: 'user',
      last4: '7777',
    });
    expect(put.body['fingerprint']).toMatch(/^[0-9a-f]{12}$/);
    expect(JSON.stringify(put.body)).not.toContain(canaryA);
    expect(
      keep(await bob.post('/v1/me/credentials', { name: 'svc', secret: canaryB })).status,
    ).toBe(201);
    const listed = keep(
      await alice.get<{ data: { name: string; id: string }[] }>('/v1/me/credentials'),
    );
    expect(listed.body.data.map((item) => item.name)).toEqual(['svc']);
  });

  it('encrypts at rest: the stored row holds neither the secret nor its base64', async () => {
    const { rows } = await server.brigade.storage.database.pool.query(
      `select count(*)::int as n from brigade.credentials`,
    );
    // The runtime role without a scope sees nothing at all (RLS); the owner checks the bytes.
    expect(rows[0].n).toBe(0);
    const owner = new pg.Client({
      connectionString: server.database.url,
    });
    await owner.connect();
    try {
      const stored = await owner.query<{ ciphertext: Buffer }>(
        'select ciphertext from brigade.credentials',
      );
      expect(stored.rows.length).toBeGreaterThanOrEqual(2);
      for (const row of stored.rows) {
        const bytes = row.ciphertext.toString('latin1');
        expect(bytes).not.toContain(canaryA);
        expect(bytes).not.toContain(canaryB);
      }
    } finally {
      await owner.end();
    }
  });

  it("never shows or deletes another user's credential", async () => {
    const bobs = keep(await bob.get<{ data: { id: string }[] }>('/v1/me/credentials'));
    const bobId = bobs.body.data[0]?.id ?? '';
    expect((await alice.request('DELETE', `/v1/me/credentials/${bobId}`)).status).toBe(404);
    expect((await admin.request('DELETE', `/v1/me/credentials/${bobId}`)).status).toBe(404);
    expect((await admin.request('DELETE', `/v1/credentials/${bobId}`)).status).toBe(404);
    const adminList = keep(await admin.get<{ data: unknown[] }>('/v1/credentials'));
    expect(adminList.body.data).toEqual([]);
    expect((await bob.get<{ data: unknown[] }>('/v1/me/credentials')).body.data).toHaveLength(1);
  });

  it("uses each user's own credential for their tool calls, and nobody else's", async () => {
    const forAlice = await runOnce(alice, { agentId, input: 'call whoami {"q":"me"}' });
    const forBob = await runOnce(bob, { agentId, input: 'call whoami {"q":"me"}' });
    responses.push(forAlice.transcript, forBob.transcript);
    expect(forAlice.run.status).toBe('completed');
    const auths = upstream.requests.map((request) => request.headers.authorization);
    expect(auths).toEqual([`Bearer ${canaryA}`, `Bearer ${canaryB}`]);
    // The upstream reflected the header: the tool output and the answer are redacted.
    expect(forAlice.answer).toContain('Bearer [redacted]');
    expect(forAlice.transcript).not.toContain(canaryA);
    expect(forBob.transcript).not.toContain(canaryB);
  });

  it('tells the model when the user has no such credential, and calls nothing', async () => {
    const before = upstream.requests.length;
    const result = await runOnce(carol, { agentId, input: 'call whoami {"q":"me"}' });
    responses.push(result.transcript);
    expect(result.answer).toContain("You have no credential named 'svc'");
    expect(upstream.requests.length).toBe(before);
  });

  it('keeps tenant-shared credentials to admins, and uses them for members’ calls', async () => {
    expect(
      (await alice.post('/v1/credentials', { name: 'team', secret: 'member-tries-this-0000' }))
        .status,
    ).toBe(403);
    expect((await alice.get('/v1/credentials')).status).toBe(403);
    const shared = keep(
      await admin.post('/v1/credentials', { name: 'team', secret: sharedCanary }),
    );
    expect(shared.status).toBe(201);
    expect(shared.body).toMatchObject({ scope: 'tenant' });
    // Members never see it listed among their own.
    expect((await alice.get<{ data: unknown[] }>('/v1/me/credentials')).body.data).toHaveLength(1);
    const result = await runOnce(alice, { agentId, input: 'call team_whoami {"q":"team"}' });
    responses.push(result.transcript);
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${sharedCanary}`);
    expect(result.transcript).not.toContain(sharedCanary);
  });

  it('audits creation and every use, without the secret', async () => {
    const audit = keep(
      await admin.get<{ data: { action: string; data: Record<string, unknown> }[] }>(
        `/v1/tenants/${tenantId}/audit-events?limit=200`,
      ),
    );
    const actions = audit.body.data.map((event) => event.action);
    expect(actions).toContain('credential.created');
    expect(actions).toContain('credential.used');
    expect(actions).toContain('tool.called');
  });

  it('never lets a canary secret reach a response, a run event or a log line', () => {
    const everything = [...responses, ...server.logs].join('\n');
    for (const secret of [canaryA, canaryB, sharedCanary]) expect(everything).not.toContain(secret);
    expect(server.logs.length).toBeGreaterThan(0);
  });

  it('re-wraps tenant keys for a new master key, and keeps working with both during rotation', async () => {
    const database = server.brigade.storage.database;
    const next = newMasterKey();
    const rotating = createCredentialStore({
      database,
      masterKeys: { current: parseMasterKey(next), previous: parseMasterKey(masterKey) },
    });
    const resolveAs = (store: typeof rotating) =>
      store.resolveForCall({
        tenantId,
        userId: aliceId,
        actor: { kind: 'operator' },
        name: 'svc',
        toolName: 'whoami',
        destination: undefined,
        runId: 'rotation-test',
      });
    expect((await resolveAs(rotating))?.secret).toBe(canaryA);
    expect(await rotating.rotateMaster()).toMatchObject({ rewrapped: 1, total: 1 });
    const afterwards = createCredentialStore({
      database,
      masterKeys: { current: parseMasterKey(next), previous: undefined },
    });
    expect((await resolveAs(afterwards))?.secret).toBe(canaryA);
    const stale = createCredentialStore({
      database,
      masterKeys: { current: parseMasterKey(masterKey), previous: undefined },
    });
    await expect(resolveAs(stale)).rejects.toThrow(/neither BRIGADE_MASTER_KEY/);
    // The operator's command does the same: brigade keys rotate-master.
    const newest = newMasterKey();
    const out: string[] = [];
    const status = await runCli(
      ['keys', 'rotate-master'],
      { out: (line) => out.push(line), err: (line) => out.push(line) },
      {
        DATABASE_URL: server.database.url,
        BRIGADE_MASTER_KEY: newest,
        BRIGADE_MASTER_KEY_PREVIOUS: next,
        LOG_LEVEL: 'silent',
      },
    );
    expect(status, out.join('\n')).toBe(0);
    expect(out.join('\n')).toMatch(/re-wrapped 1 of 1 tenant data keys/);
    const rotated = createCredentialStore({
      database,
      masterKeys: { current: parseMasterKey(newest), previous: undefined },
    });
    expect((await resolveAs(rotated))?.secret).toBe(canaryA);
  });
});
