import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportSections } from '../src/domain/identity/data-rights-service.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import {
  activeOwnersOf,
  exportOf,
  remnantsOf,
  seedClient,
} from './support/data-rights-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The data subject's rights at their edges: erasures racing demotions (a tenant always keeps
 * an active owner), ids in another spelling, empty exports, the tenant's shared cache, and an
 * erasure the response cache cannot complete.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let admin: { userId: string; client: ApiClient };

interface Problem {
  code: string;
}

const seed = (role: string, tenant = tenantId) =>
  seedClient({ operator, url: server.url }, { tenantId: tenant, role });

beforeAll(async () => {
  server = await startTestServer({
    models: { local: { tokenDelayMs: 20 } },
    runs: { pollIntervalMs: 50 },
  });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'rights-edges');
  admin = await seed('admin');
});

afterAll(async () => {
  await server?.stop();
});

describe('data rights under races and edge cases', () => {
  const activeOwners = (tenant: string) => activeOwnersOf(server.database.url, tenant);

  it('never leaves a tenant without an active owner, whatever runs at the same time', async () => {
    for (let attempt = 0; attempt < 4; attempt += 1) {
      const tenant = await seedTenant(operator, `owners-race-${attempt}`);
      const first = await seed('owner', tenant);
      const second = await seed('owner', tenant);
      const users = `/v1/tenants/${tenant}/users`;
      const outcomes = await Promise.all([
        second.client.request('DELETE', `${users}/${first.userId}`),
        second.client.request('PATCH', `${users}/${second.userId}`, { role: 'admin' }),
      ]);
      expect(outcomes.map((outcome) => outcome.status).sort()).toContain(409);
      expect(await activeOwners(tenant)).toBe(1);
    }
    // A disabled owner keeps no tenant owned: the last active one cannot step down.
    const tenant = await seedTenant(operator, 'owners-disabled');
    const first = await seed('owner', tenant);
    const second = await seed('owner', tenant);
    const users = `/v1/tenants/${tenant}/users`;
    const disabled = await second.client.request('PATCH', `${users}/${first.userId}`, {
      status: 'disabled',
    });
    expect(disabled.status).toBe(200);
    const demoted = await second.client.request<Problem>('PATCH', `${users}/${second.userId}`, {
      role: 'admin',
    });
    expect(demoted.status).toBe(409);
    expect(await activeOwners(tenant)).toBe(1);
  });

  it('takes an upper-case spelling of one’s own id for oneself', async () => {
    const tenant = await seedTenant(operator, 'rights-case');
    const first = await seed('owner', tenant);
    await seed('owner', tenant);
    const narrow = await first.client.post<Created>(
      `/v1/tenants/${tenant}/users/${first.userId}/api-keys`,
      { name: 'no-self-delete', scopes: ['user:read', 'user:manage', 'user:manage-owners'] },
    );
    const client = apiClient(server.url, String(narrow.body.secret));
    const upper = `/v1/tenants/${tenant}/users/${first.userId.toUpperCase()}`;
    const refused = await client.request<Problem>('DELETE', upper);
    expect(refused.status).toBe(403);
    expect((await first.client.get('/v1/me')).status).toBe(200);
  });

  it('writes every section of an export, an empty one as []', async () => {
    const fresh = await seed('viewer');
    const body = (await exportOf(fresh.client)).body;
    for (const section of exportSections) {
      expect(Array.isArray(body[section]), section).toBe(true);
    }
    expect(body['threads']).toEqual([]);
    expect(body.complete).toBe(true);
  });

  it('drops the tenant’s shared cached answers with the user', async () => {
    const shared = await admin.client.post('/v1/model-routes', {
      name: 'shared-cache',
      deployments: [{ model: 'local' }],
      cache: { ttlSeconds: 600, scope: 'tenant' },
    });
    expect(shared.status).toBe(201);
    const ask = (client: ApiClient) =>
      client.post('/v1/chat/completions', {
        model: 'shared-cache',
        messages: [{ role: 'user', content: 'my name is Mallory Example' }],
      });
    const mallory = await seed('member');
    const other = await seed('member');
    expect((await ask(mallory.client)).headers.get('x-brigade-cache')).toBe('miss');
    expect((await ask(other.client)).headers.get('x-brigade-cache')).toBe('hit');
    expect(
      (await admin.client.request('DELETE', `/v1/tenants/${tenantId}/users/${mallory.userId}`))
        .status,
    ).toBe(204);
    expect((await ask(other.client)).headers.get('x-brigade-cache')).toBe('miss');
  });

  it('has every other process drop its copies of the user’s cached answers', async () => {
    const second = await startTestServer({}, { database: server.database });
    try {
      const route = await admin.client.post('/v1/model-routes', {
        name: 'two-process-cache',
        deployments: [{ model: 'local' }],
        cache: { ttlSeconds: 600, scope: 'tenant' },
      });
      expect(route.status).toBe(201);
      const eve = await seed('member');
      const other = await seed('member');
      const elsewhere = apiClient(second.url, other.secret);
      const ask = (client: ApiClient) =>
        client.post('/v1/chat/completions', {
          model: 'two-process-cache',
          messages: [{ role: 'user', content: 'my name is Eve Example' }],
        });
      // Eve's answer is cached in the second process's memory (its in-process store).
      expect((await ask(apiClient(second.url, eve.secret))).headers.get('x-brigade-cache')).toBe(
        'miss',
      );
      expect((await ask(elsewhere)).headers.get('x-brigade-cache')).toBe('hit');
      // Erased through the first process: the second hears of it and drops its copy.
      expect(
        (await admin.client.request('DELETE', `/v1/tenants/${tenantId}/users/${eve.userId}`))
          .status,
      ).toBe(204);
      let outcome: string | null = 'hit';
      for (let tries = 0; tries < 50 && outcome === 'hit'; tries += 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        outcome = (await ask(elsewhere)).headers.get('x-brigade-cache');
      }
      expect(outcome).toBe('miss');
    } finally {
      await second.stop();
    }
  });
});

describe('the same erasure asked for at once', () => {
  it('erases once: one 204, the others 404, one deletion_started', async () => {
    const target = await seed('member');
    const statuses = await Promise.all(
      Array.from({ length: 5 }, (_, index) =>
        admin.client
          .request('DELETE', `/v1/tenants/${tenantId}/users/${target.userId}?reason=r${index}`)
          .then((response) => response.status),
      ),
    );
    expect(statuses.sort()).toEqual([204, 404, 404, 404, 404]);
    const log = await admin.client.get<{ data: { action: string; targetId: string }[] }>(
      `/v1/tenants/${tenantId}/audit-events?limit=500`,
    );
    const started = log.body.data.filter(
      (event) => event.action === 'user.deletion_started' && event.targetId === target.userId,
    );
    expect(started).toHaveLength(1);
  });
});

describe('erasing a user whose runs are executing', () => {
  it('erases them every time, however the runs’ own transactions interleave', async () => {
    const agent = await admin.client.post<Created>('/v1/agents', { name: 'busy', model: 'local' });
    for (let attempt = 0; attempt < 4; attempt += 1) {
      const busy = await seed('member');
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          const thread = await busy.client.post<Created>('/v1/threads', {});
          const run = await busy.client.post(`/v1/threads/${thread.body.id}/runs`, {
            agentId: agent.body.id,
            input: 'x '.repeat(300),
          });
          expect(run.status).toBe(201);
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      const deleted = await admin.client.request(
        'DELETE',
        `/v1/tenants/${tenantId}/users/${busy.userId}`,
      );
      expect(deleted.status, `attempt ${attempt}`).toBe(204);
      expect(await remnantsOf(server.database.url, busy.userId)).toMatchObject({
        users: 0,
        threads: 0,
        runs: 0,
        run_queue: 0,
      });
    }
  });

  it('refuses to finish an erasure that would leave no active owner (re-enabled meanwhile)', async () => {
    const tenant = await seedTenant(operator, 'erase-reenabled');
    const first = await seed('owner', tenant);
    const second = await seed('owner', tenant);
    const agent = await first.client.post<Created>('/v1/agents', { name: 'slow', model: 'local' });
    const thread = await second.client.post<Created>('/v1/threads', {});
    await second.client.post(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent.body.id,
      input: 'x '.repeat(2_000),
    });
    // Hold the second owner's runs, so the erasure waits between disabling and deleting.
    const holder = new pg.Client({ connectionString: server.database.url });
    await holder.connect();
    const users = `/v1/tenants/${tenant}/users`;
    try {
      await holder.query('begin');
      await holder.query('select id from brigade.runs where user_id = $1 for update', [
        second.userId,
      ]);
      const erasure = first.client.request<Problem>('DELETE', `${users}/${second.userId}`);
      for (let wait = 0; wait < 200; wait += 1) {
        const status = await holder.query<{ status: string }>(
          'select status from brigade.users where id = $1',
          [second.userId],
        );
        if (status.rows[0]?.status === 'disabled') break;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      expect(
        (await first.client.request('PATCH', `${users}/${second.userId}`, { status: 'active' }))
          .status,
      ).toBe(200);
      expect(
        (await first.client.request('PATCH', `${users}/${first.userId}`, { role: 'admin' })).status,
      ).toBe(200);
      await holder.query('rollback');
      expect((await erasure).status).toBe(409);
    } finally {
      await holder.end();
    }
    expect(await activeOwnersOf(server.database.url, tenant)).toBe(1);
  });
});

describe('an erasure the response cache cannot complete', () => {
  it('answers 503 and changes nothing, so the user can ask again', async () => {
    // Redis configured but unreachable: the purge cannot be done.
    const broken = await startTestServer(
      { models: { local: { tokenDelayMs: 0 } } },
      { env: { REDIS_URL: 'redis://127.0.0.1:1' } },
    );
    try {
      const brokenOperator = apiClient(broken.url, testOperatorKey);
      const tenant = await seedTenant(brokenOperator, 'redis-down');
      const user = await seedUser(brokenOperator, { tenantId: tenant, role: 'member' });
      const client = apiClient(broken.url, user.secret);
      const thread = await client.post<Created>('/v1/threads', { title: 'keep me' });
      const refused = await client.request<Problem>(
        'DELETE',
        `/v1/tenants/${tenant}/users/${user.userId}`,
      );
      expect(refused.status).toBe(503);
      expect(refused.body.code).toBe('service_unavailable');
      expect((await client.get('/v1/me')).status).toBe(200);
      expect((await client.get(`/v1/threads/${thread.body.id}`)).status).toBe(200);
    } finally {
      await broken.stop();
    }
  });
});
