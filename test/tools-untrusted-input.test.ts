import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
  runOnce,
  startLoggedServer,
  startUpstream,
} from './support/tool-fixtures.ts';

/**
 * What a tenant's tool definition and its upstream can do to the harness: a schema `pattern`
 * built to backtrack catastrophically (it must not stall the server for every tenant), and an
 * upstream that echoes the caller's credential where the response cap cuts through it (no part
 * of the secret may come back).
 */
const secret = 'QZXkq7Vw93mPLr2sTn8YbH4cR6uJ1dWe5gNaFt0y';
/** Before the echoed secret: the JSON string's quote, 100 letters and `Bearer `. */
const secretOffset = 1 + 100 + 'Bearer '.length;

let upstream: Awaited<ReturnType<typeof startUpstream>>;
let server: LoggedServer;
let admin: ApiClient;
let member: ApiClient;

function toolBody(name: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    description: `The ${name} tool.`,
    risk: 'read',
    urlTemplate: `${upstream.url}/echo`,
    inputSchema: { type: 'object', properties: { q: { type: 'string' } } },
    ...extra,
  };
}

beforeAll(async () => {
  upstream = await startUpstream(
    (request) => `${'A'.repeat(100)}${request.headers.authorization} tail`,
  );
  server = await startLoggedServer({ tools: { tenantHttp: { allowedHosts: ['127.0.0.1'] } } });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'untrusted');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await upstream?.close();
});

describe('argument patterns from a tenant’s schema', () => {
  it('match in linear time: a catastrophic pattern cannot stall the server for every tenant', async () => {
    const created = await admin.post('/v1/tools', {
      ...toolBody('patterned'),
      inputSchema: {
        type: 'object',
        properties: { q: { type: 'string', pattern: '^(a+)+$' } },
        patternProperties: { '^(x+x+)+y$': { type: 'string' } },
      },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'patterned',
      tools: ['patterned'],
    });
    // On a backtracking engine each extra `a` doubles the time: 2^60 steps never end.
    const before = upstream.requests.length;
    const refused = await runOnce(member, {
      agentId: agent.body.id,
      input: `call patterned {"q":"${'a'.repeat(60)}!","${'x'.repeat(60)}":"v"}`,
    });
    expect(refused.run.status).toBe('completed');
    expect(refused.answer).toContain('must match pattern');
    expect(upstream.requests.length).toBe(before);
    // A matching argument still passes.
    const passed = await runOnce(member, {
      agentId: agent.body.id,
      input: `call patterned {"q":"${'a'.repeat(60)}"}`,
    });
    expect(passed.answer).toContain('"status":200');
    expect(upstream.requests.length).toBe(before + 1);
  });

  it('refuses, with 422 naming it, a pattern that cannot be matched in linear time', async () => {
    for (const pattern of ['(a)\\1', '^(?=a)a$', '(?<!x)y']) {
      const refused = await admin.post<{ code: string }>('/v1/tools', {
        ...toolBody('lookaround'),
        inputSchema: { type: 'object', properties: { q: { type: 'string', pattern } } },
      });
      expect(refused.status, pattern).toBe(422);
      expect(refused.body.code).toBe('validation_failed');
      expect(JSON.stringify(refused.body)).toContain('regexp');
    }
    expect((await admin.get('/v1/tools/lookaround')).status).toBe(404);
  });
});

describe('changing a tool', () => {
  it('changes only the fields sent: the method, timeout and schema stay', async () => {
    const created = await admin.post<Created>('/v1/tools', {
      ...toolBody('poster'),
      method: 'POST',
      timeoutMs: 4_000,
    });
    expect(created.status).toBe(201);
    const changed = await admin.request('PATCH', `/v1/tools/${created.body.id}`, {
      description: 'Posts, changed.',
    });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({
      description: 'Posts, changed.',
      method: 'POST',
      timeoutMs: 4_000,
      inputSchema: { type: 'object', properties: { q: { type: 'string' } } },
      version: 2,
    });
  });
});

describe('a response cap that cuts through an echoed credential', () => {
  it('lets no start of the secret through, wherever the cut falls', async () => {
    expect((await member.post('/v1/me/credentials', { name: 'echoed', secret })).status).toBe(201);
    const tools: string[] = [];
    // The run's own cap (the same number) then cuts the output, whose JSON wrapper adds about
    // 25 characters, again: only a cut in the secret's last 15 characters shows its start.
    for (let into = 27; into < secret.length; into += 3) {
      const name = `cut_${into}`;
      const created = await admin.post('/v1/tools', {
        ...toolBody(name),
        auth: { credential: 'echoed', scheme: 'bearer' },
        maxResponseChars: secretOffset + into,
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      tools.push(name);
    }
    const agent = await admin.post<Created>('/v1/agents', { name: 'echoes', tools });
    for (const name of tools) {
      const result = await runOnce(member, { agentId: agent.body.id, input: `call ${name} {}` });
      expect(result.run.status).toBe('completed');
      const steps = await member.get(
        `/v1/threads/${result.ids.threadId}/runs/${result.ids.runId}/steps`,
      );
      const seen = result.transcript + JSON.stringify(steps.body);
      expect(seen, name).not.toContain(secret.slice(0, 3));
    }
    // The upstream did get the credential: the cut, not the call, is what changed.
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${secret}`);
    expect(server.logs.join('')).not.toContain(secret.slice(0, 8));
  });
});
