import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unstorableTextPath } from '../src/http/middleware/unstorable-text.ts';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Values PostgreSQL cannot take, sent as a hostile client would: a NUL character or an unpaired
 * surrogate anywhere in a JSON body, malformed page cursors and ids. Each is a 4xx naming the
 * field, never a 500, and nothing of the request is written.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let owner: ApiClient;
let ownerSecret: string;
let agentId: string;
let threadId: string;

type Created = { id: string };
type Problem = { code: string; errors?: { path: string }[] };

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'unstorable');
  ownerSecret = (await seedUser(operator, { tenantId, role: 'owner' })).secret;
  owner = apiClient(server.url, ownerSecret);
  agentId = (await owner.post<Created>('/v1/agents', { name: 'helper', model: 'local' })).body.id;
  threadId = (await owner.post<Created>('/v1/threads', {})).body.id;
});

afterAll(async () => {
  await server?.stop();
});

const bad = fc.constantFrom('\u0000', '\ud800', '\udfff', '\ud83d');
const text = fc
  .tuple(fc.string({ maxLength: 20 }), bad, fc.string({ maxLength: 20 }))
  .map(([before, poison, after]) => `${before}${poison}${after}`)
  // A lone high surrogate followed by a generated low one would make a valid pair.
  .filter((value) => unstorableTextPath(value) !== undefined);

/** Where a poisoned string goes: a route, a body with the string at `path`, and how to list. */
const targets: {
  readonly name: string;
  readonly path: () => string;
  readonly body: (value: string) => unknown;
  readonly field: string;
  readonly list: () => string;
}[] = [
  {
    name: 'thread title',
    path: () => '/v1/threads',
    body: (value) => ({ title: value }),
    field: 'body.title',
    list: () => '/v1/threads?limit=100',
  },
  {
    name: 'thread metadata (jsonb)',
    path: () => '/v1/threads',
    body: (value) => ({ metadata: { note: value } }),
    field: 'body.metadata.note',
    list: () => '/v1/threads?limit=100',
  },
  {
    name: 'run input',
    path: () => `/v1/threads/${threadId}/runs`,
    body: (value) => ({ agentId, input: value }),
    field: 'body.input',
    list: () => `/v1/threads/${threadId}/runs`,
  },
  {
    name: 'agent instructions',
    path: () => '/v1/agents',
    body: (value) => ({ name: 'poisoned', instructions: value }),
    field: 'body.instructions',
    list: () => '/v1/agents?limit=100',
  },
  {
    name: 'a metadata key',
    path: () => `/v1/tenants/${tenantId}/users`,
    body: (value) => ({ role: 'member', metadata: { [value]: 1 } }),
    field: 'body.metadata.',
    list: () => `/v1/tenants/${tenantId}/users?limit=100`,
  },
];

describe('a NUL character or an unpaired surrogate in a JSON body', () => {
  it('is a 422 naming the field, and nothing is written', async () => {
    const before = new Map<string, string>();
    for (const target of targets)
      before.set(target.name, JSON.stringify((await owner.get(target.list())).body));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...targets), text, async (target, value) => {
        const response = await owner.post<Problem>(target.path(), target.body(value));
        expect(response.status, `${target.name}: ${JSON.stringify(response.body)}`).toBe(422);
        expect(response.body.code).toBe('validation_failed');
        expect(response.body.errors?.[0]?.path.startsWith(target.field)).toBe(true);
      }),
      { numRuns: 60 },
    );
    for (const target of targets)
      expect(JSON.stringify((await owner.get(target.list())).body), target.name).toBe(
        before.get(target.name),
      );
  });

  it('sees a lone surrogate behind an escaped backslash', async () => {
    // JSON text "A\\uD800\uDC00B": a literal backslash-u-D800, then a lone low surrogate.
    const response = await fetch(`${server.url}/v1/threads`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ownerSecret}`, 'content-type': 'application/json' },
      body: '{"title":"A\\\\uD800\\uDC00B"}',
    });
    expect(response.status).toBe(422);
    expect(await response.json()).toMatchObject({ errors: [{ path: 'body.title' }] });
  });

  it('passes when escaped surrogates form a pair, and an escaped backslash is not an escape', async () => {
    const body = '{"title":"\\ud83d\\ude00 and \\\\u0000 literally"}';
    const response = await fetch(`${server.url}/v1/threads`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ownerSecret}`, 'content-type': 'application/json' },
      body,
    });
    expect(response.status).toBe(201);
    expect(((await response.json()) as { title: string }).title).toBe(
      '\u{1F600} and \\u0000 literally',
    );
  });

  it('is an OpenAI-shaped 400 on /v1/chat/completions, and an agent leaves no thread', async () => {
    const threads = async () =>
      ((await owner.get<{ data: unknown[] }>('/v1/threads?limit=100')).body.data ?? []).length;
    const count = await threads();
    for (const model of ['local', 'agent:helper']) {
      const response = await owner.post<{ error: { type: string; param: string } }>(
        '/v1/chat/completions',
        { model, messages: [{ role: 'user', content: 'a\u0000b' }] },
      );
      expect(response.status).toBe(400);
      expect(response.body.error).toMatchObject({ type: 'invalid_request_error' });
    }
    expect(await threads()).toBe(count);
  });
});

describe('a number beyond the range of a double in a JSON body', () => {
  const post = (path: string, body: string) =>
    fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${testOperatorKey}`, 'content-type': 'application/json' },
      body,
    });

  it('is a 422 naming the field, and nothing is written', async () => {
    const before = JSON.stringify((await operator.get('/v1/tenants?limit=100')).body);
    for (const [metadata, path] of [
      ['{"n":1e400}', 'body.metadata.n'],
      ['{"m":-1E+400}', 'body.metadata.m'],
      ['{"deep":[1,{"x":12.5e308}]}', 'body.metadata.deep.1.x'],
      [`{"long":${'9'.repeat(320)}}`, 'body.metadata.long'],
    ]) {
      const response = await post(
        '/v1/tenants',
        `{"slug":"bignum","name":"x","metadata":${metadata}}`,
      );
      expect(response.status, metadata).toBe(422);
      expect(await response.json()).toMatchObject({
        code: 'validation_failed',
        errors: [{ path }],
      });
    }
    expect(JSON.stringify((await operator.get('/v1/tenants?limit=100')).body)).toBe(before);
  });

  it('leaves finite numbers as JSON reads them, large or tiny', async () => {
    const response = await post(
      '/v1/tenants',
      '{"slug":"bignum-finite","name":"x","metadata":{"big":123456789012345678901234567890,"max":1.7e308,"tiny":1e-400}}',
    );
    expect(response.status).toBe(201);
    expect(((await response.json()) as { metadata: unknown }).metadata).toEqual({
      big: 1.2345678901234568e29,
      max: 1.7e308,
      tiny: 0,
    });
  });
});

describe('an agent completion the run refuses', () => {
  it('leaves no empty thread behind', async () => {
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const client = apiClient(server.url, member.secret);
    const policy = await owner.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: member.userId,
      limits: { runsPerDay: 0 },
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(201);
    const refused = await client.post('/v1/chat/completions', {
      model: 'agent:helper',
      messages: [{ role: 'user', content: 'hello' }],
    });
    expect(refused.status).toBe(429);
    expect((await client.get<{ data: unknown[] }>('/v1/threads')).body.data).toEqual([]);
    const tooLong = await client.post('/v1/chat/completions', {
      model: 'agent:helper',
      messages: [{ role: 'user', content: 'x'.repeat(200_001) }],
    });
    expect(tooLong.status).toBe(400);
    expect((await client.get<{ data: unknown[] }>('/v1/threads')).body.data).toEqual([]);
  });
});

describe('malformed cursors and ids', () => {
  it('answer 422 on every list, never a 500', async () => {
    for (const path of [
      '/v1/threads',
      '/v1/agents',
      `/v1/tenants/${tenantId}/users`,
      `/v1/threads/${threadId}/messages`,
    ]) {
      for (const cursor of ['garbage', '-1', '9223372036854775808', '1e3', '%00']) {
        const response = await owner.get<Problem>(`${path}?after=${cursor}`);
        expect(response.status, `${path}?after=${cursor}`).toBe(422);
        expect(response.body.code).toBe('validation_failed');
      }
    }
    const tenants = await operator.get<Problem>('/v1/tenants?after=nope');
    expect(tenants.status).toBe(422);
  });

  it('answer 404 for a user’s consents under a tenant id that is not one', async () => {
    for (const tenant of ['abc', 'null', '-1']) {
      const response = await operator.get<Problem>(
        `/v1/tenants/${tenant}/users/00000000-0000-4000-8000-000000000000/consents`,
      );
      expect(response.status).toBe(404);
    }
  });
});
