import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import {
  listAllMemories,
  type MemoryBody,
  memoryScriptCore,
  runOps,
} from './support/memory-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * What agents remember, seen and erased by its user over the API, and nobody else: another
 * member's runs and API calls, the tenant's admin and another tenant's users never see or
 * erase it (404, never a hint that it exists). Bad queries are 422, never 500.
 */
interface AuditEvent {
  readonly action: string;
  readonly targetId: string | null;
  readonly data: Record<string, unknown>;
  readonly actorKind: string;
  readonly actorUserId: string | null;
}

let server: TestServer;
let operator: ApiClient;

interface Member {
  readonly client: ApiClient;
  readonly threadId: string;
  readonly agentId: string;
}

let alice: Member;
let bob: Member;
let admin: Member;
let stranger: Member;

async function memberOf(tenantId: string, role: string, agentId: string): Promise<Member> {
  const client = apiClient(server.url, (await seedUser(operator, { tenantId, role })).secret);
  expect(
    (await client.post('/v1/me/consents', { purpose: 'long_term_memory', version: '1' })).status,
  ).toBe(201);
  const threadId = (await client.post<Created>('/v1/threads', {})).body.id;
  return { client, threadId, agentId };
}

async function tenantWithAgent(slug: string) {
  const tenantId = await seedTenant(operator, slug);
  const owner = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'owner' })).secret,
  );
  const agent = await owner.post<Created>('/v1/agents', {
    name: 'script',
    coreId: 'memory-script',
  });
  return { tenantId, agentId: agent.body.id, owner };
}

beforeAll(async () => {
  server = await startTestServer({ runs: { pollIntervalMs: 50 } }, { cores: [memoryScriptCore] });
  operator = apiClient(server.url, testOperatorKey);
  const home = await tenantWithAgent('memory-home');
  const away = await tenantWithAgent('memory-away');
  alice = await memberOf(home.tenantId, 'member', home.agentId);
  bob = await memberOf(home.tenantId, 'member', home.agentId);
  admin = await memberOf(home.tenantId, 'admin', home.agentId);
  stranger = await memberOf(away.tenantId, 'owner', away.agentId);
  const written = await runOps(alice.client, alice, [
    { ns: 'thread', op: 'set', key: 'diagnosis', value: 'private' },
    { ns: 'user', op: 'set', key: 'address', value: '1 Secret Lane' },
  ]);
  expect(written.status).toBe('completed');
});

afterAll(async () => {
  await server?.stop();
});

describe('a user’s memory over the API', () => {
  it('is invisible to another user’s runs, even with the same keys', async () => {
    const probe = await runOps(bob.client, bob, [
      { ns: 'user', op: 'get', key: 'address' },
      { ns: 'user', op: 'list' },
      { ns: 'thread', op: 'list' },
      { ns: 'user', op: 'delete', key: 'address' },
      { ns: 'user', op: 'set', key: 'address', value: 'bob’s own' },
    ]);
    expect(probe.results).toEqual([{ found: false }, [], [], false, 'ok']);
    const again = await runOps(alice.client, alice, [
      { ns: 'user', op: 'get', key: 'address' },
      { ns: 'thread', op: 'get', key: 'diagnosis' },
    ]);
    expect(again.results).toEqual([
      { found: true, value: '1 Secret Lane' },
      { found: true, value: 'private' },
    ]);
  });

  it('lists only the caller’s own memory: not to another member, the admin or another tenant', async () => {
    const own = await listAllMemories(alice.client);
    expect(own.map((entry) => entry.key).sort()).toEqual(['address', 'diagnosis']);
    const aliceIds = new Set(own.map((entry) => entry.id));
    for (const other of [bob, admin, stranger]) {
      const seen = await listAllMemories(other.client);
      expect(seen.filter((entry) => aliceIds.has(entry.id))).toEqual([]);
      expect(JSON.stringify(seen)).not.toContain('Secret Lane');
      // Even naming Alice's thread shows nothing.
      const named = await listAllMemories(other.client, `&threadId=${alice.threadId}`);
      expect(named).toEqual([]);
    }
    const operatorList = await operator.get('/v1/me/memories');
    expect(operatorList.status).toBe(403);
  });

  it('answers 404 to anyone else erasing an entry, exactly as for an unknown id, and erases nothing', async () => {
    const [entry] = await listAllMemories(alice.client, '&scope=user');
    expect(entry?.key).toBe('address');
    const id = entry?.id ?? '';
    const unknown = await bob.client.request('DELETE', `/v1/me/memories/${randomUUID()}`);
    expect(unknown.status).toBe(404);
    for (const other of [bob, admin, stranger]) {
      const attempt = await other.client.request<{ code: string }>(
        'DELETE',
        `/v1/me/memories/${id}`,
      );
      expect(attempt.status).toBe(404);
      expect(attempt.body.code).toBe(unknown.body['code'] as string);
      const cleared = await other.client.request<{ deleted: number }>(
        'DELETE',
        `/v1/me/memories?threadId=${alice.threadId}`,
      );
      expect(cleared.body.deleted).toBe(0);
    }
    expect((await bob.client.request('DELETE', '/v1/me/memories/not-a-uuid')).status).toBe(404);
    expect((await listAllMemories(alice.client)).length).toBe(2);
  });

  it('pages through the caller’s memory and filters it by scope and thread', async () => {
    const tenant = await tenantWithAgent('memory-pages');
    const page = await memberOf(tenant.tenantId, 'member', tenant.agentId);
    const user = page;
    const second = (await user.client.post<Created>('/v1/threads', {})).body.id;
    const ops = (threadKeys: string) =>
      ['a', 'b', 'c'].map((key) => ({
        ns: 'thread' as const,
        op: 'set' as const,
        key: `${threadKeys}-${key}`,
        value: key,
      }));
    await runOps(user.client, page, [
      ...ops('one'),
      { ns: 'user', op: 'set', key: 'u1', value: 1 },
      { ns: 'user', op: 'set', key: 'u2', value: 2 },
    ]);
    await runOps(user.client, { ...page, threadId: second }, ops('two'));
    const seen: MemoryBody[] = [];
    let after = '';
    for (let pages = 0; pages < 10; pages += 1) {
      const response = await user.client.get<{ data: MemoryBody[]; nextCursor: string | null }>(
        `/v1/me/memories?limit=3${after}`,
      );
      expect(response.status).toBe(200);
      expect(response.body.data.length).toBeLessThanOrEqual(3);
      seen.push(...response.body.data);
      if (response.body.nextCursor === null) break;
      after = `&after=${response.body.nextCursor}`;
    }
    expect(seen.length).toBe(8);
    expect(new Set(seen.map((entry) => entry.id)).size).toBe(8);
    expect(seen.map((entry) => entry.id)).toEqual([...seen.map((entry) => entry.id)].sort());
    expect((await listAllMemories(user.client, '&scope=user')).map((e) => e.key).sort()).toEqual([
      'u1',
      'u2',
    ]);
    expect((await listAllMemories(user.client, '&scope=thread')).length).toBe(6);
    const ofSecond = await listAllMemories(user.client, `&threadId=${second}`);
    expect(ofSecond.map((entry) => entry.key).sort()).toEqual(['two-a', 'two-b', 'two-c']);

    // Erasing: one entry, a thread's, then everything long-term; deleting a thread takes its memory.
    const one = ofSecond[0]?.id ?? '';
    expect((await user.client.request('DELETE', `/v1/me/memories/${one}`)).status).toBe(204);
    expect((await user.client.request('DELETE', `/v1/me/memories/${one}`)).status).toBe(404);
    const clearedThread = await user.client.request<{ deleted: number }>(
      'DELETE',
      `/v1/me/memories?threadId=${second}`,
    );
    expect(clearedThread.body).toEqual({ deleted: 2 });
    const clearedUser = await user.client.request<{ deleted: number }>(
      'DELETE',
      '/v1/me/memories?scope=user',
    );
    expect(clearedUser.body).toEqual({ deleted: 2 });
    expect((await user.client.request('DELETE', `/v1/threads/${page.threadId}`)).status).toBe(204);
    expect(await listAllMemories(user.client)).toEqual([]);

    // Each erasure is audited, as the user's act, naming no key and no value.
    const log = await tenant.owner.get<{ data: AuditEvent[] }>(
      `/v1/tenants/${tenant.tenantId}/audit-events?limit=500`,
    );
    expect(log.status).toBe(200);
    const erasures = log.body.data.filter((event) => event.action.startsWith('memory.'));
    const me = (await user.client.get<{ user: { id: string } }>('/v1/me')).body.user.id;
    expect(
      erasures.map(({ action, targetId, data, actorKind, actorUserId }) => ({
        action,
        targetId,
        data,
        actor: [actorKind, actorUserId],
      })),
    ).toEqual([
      {
        action: 'memory.deleted',
        targetId: one,
        data: { scope: 'thread', threadId: second },
        actor: ['user', me],
      },
      {
        action: 'memory.cleared',
        targetId: me,
        data: { scope: null, threadId: second, deleted: 2 },
        actor: ['user', me],
      },
      {
        action: 'memory.cleared',
        targetId: me,
        data: { scope: 'user', threadId: null, deleted: 2 },
        actor: ['user', me],
      },
    ]);
    expect(JSON.stringify(erasures)).not.toMatch(/two-|"u1"|"u2"/);
  });

  it('refuses malformed queries with 422 problem documents, never 500', async () => {
    const bad = [
      ['GET', '/v1/me/memories?after=not-a-uuid'],
      ['GET', '/v1/me/memories?threadId=not-a-uuid'],
      ['GET', `/v1/me/memories?threadId=${randomUUID()}x`],
      ['GET', '/v1/me/memories?scope=everything'],
      ['GET', '/v1/me/memories?limit=0'],
      ['GET', '/v1/me/memories?limit=101'],
      ['GET', '/v1/me/memories?owner=someone'],
      ['GET', `/v1/me/memories?scope=user&threadId=${randomUUID()}`],
      ['DELETE', '/v1/me/memories'],
      ['DELETE', '/v1/me/memories?threadId=%00'],
      ['DELETE', '/v1/me/memories?scope=nothing'],
      ['DELETE', `/v1/me/memories?scope=user&threadId=${randomUUID()}`],
    ] as const;
    for (const [method, path] of bad) {
      const response = await alice.client.request<{ code: string }>(method, path);
      expect({ path, status: response.status, type: response.headers.get('content-type') }).toEqual(
        { path, status: 422, type: 'application/problem+json' },
      );
      expect(response.body.code).toBe('validation_failed');
    }
    expect((await listAllMemories(alice.client)).length).toBe(2);
  });
});
