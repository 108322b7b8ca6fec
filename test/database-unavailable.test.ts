import { randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import {
  clusterQuery,
  createTestDatabase,
  startTestServer,
  type TestDatabase,
  type TestServer,
  testOperatorKey,
} from './support/test-brigade.ts';

/**
 * PostgreSQL refusing connections (max_connections, a role's connection limit, a restart in
 * progress) or out of reach is an outage, not a bug: clients get 503 with Retry-After and no
 * internals, and the server serves again, without a restart, once the database is back. Each
 * server runs as a runtime role of its own, since these cases change the role (roles are
 * cluster-wide: the shared `brigade_app` belongs to every other test file too).
 */
function uniqueRole(): string {
  return `brigade_t_down_${randomBytes(4).toString('hex')}`;
}

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function expectUnavailable(response: { status: number; headers: Headers; body: unknown }) {
  expect(response.status).toBe(503);
  expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
  // Nothing internal: no server message, role, socket error or stack.
  expect(JSON.stringify(response.body)).not.toMatch(
    /postgres|brigade_t_|ECONN|terminat|node_modules/i,
  );
}

describe('PostgreSQL refusing the runtime role’s connections', () => {
  const role = uniqueRole();
  let server: TestServer;
  let member: ApiClient;
  beforeAll(async () => {
    server = await startTestServer({ database: { runtimeRole: role } });
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'refused');
    member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  });
  afterAll(async () => {
    await server?.stop();
    await clusterQuery(`drop role if exists ${role}`);
  });

  it('answers 503 with Retry-After, then serves again once connections are allowed', async () => {
    expect((await member.get('/v1/me')).status).toBe(200);
    await clusterQuery(`alter role ${role} connection limit 0`);
    try {
      await clusterQuery(
        `select pg_terminate_backend(pid) from pg_stat_activity where usename = '${role}'`,
      );
      const refused = await member.get('/v1/me');
      expectUnavailable(refused);
      expect(refused.body).toMatchObject({ code: 'service_unavailable' });
      const completion = await member.post('/v1/chat/completions', {
        model: 'local',
        messages: [{ role: 'user', content: 'hi' }],
      });
      expectUnavailable(completion);
      expect(completion.body).toMatchObject({ error: { type: 'server_error' } });
    } finally {
      await clusterQuery(`alter role ${role} connection limit -1`);
    }
    await until(async () => (await member.get('/v1/me')).status === 200);
  });
});

describe('PostgreSQL out of reach', () => {
  const role = uniqueRole();
  let database: TestDatabase;
  let server: TestServer;
  let member: ApiClient;
  let proxy: Server;
  let proxyPort: number;
  const sockets = new Set<Socket>();
  /** A TCP proxy in front of PostgreSQL, so the test can take the database away and back. */
  function listen(port: number): Promise<Server> {
    const target = new URL(database.url);
    const created = createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    return new Promise((resolve) => created.listen(port, '127.0.0.1', () => resolve(created)));
  }
  beforeAll(async () => {
    database = await createTestDatabase();
    proxy = await listen(0);
    proxyPort = (proxy.address() as AddressInfo).port;
    const viaProxy = new URL(database.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxyPort);
    server = await startTestServer(
      { database: { runtimeRole: role } },
      { database: { ...database, url: viaProxy.toString() } },
    );
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'unreachable');
    member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  });
  afterAll(async () => {
    await server?.stop();
    proxy?.close();
    for (const socket of sockets) socket.destroy();
    await database?.drop();
    await clusterQuery(`drop role if exists ${role}`);
  });

  it('answers 503 with Retry-After while it is gone, and serves again when it is back', async () => {
    expect((await member.get('/v1/me')).status).toBe(200);
    const closed = new Promise((resolve) => proxy.close(resolve));
    for (const socket of sockets) socket.destroy();
    await closed;
    for (let attempt = 0; attempt < 3; attempt += 1) expectUnavailable(await member.get('/v1/me'));
    proxy = await listen(proxyPort);
    await until(async () => (await member.get('/v1/me')).status === 200);
  });
});
