import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer } from '../src/testing/index.ts';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { collect, openAiClient } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * `response_format` (json_object, json_schema) and the per-route response cache, through the
 * official `openai` client: the local model for the formats, the mock provider for what reaches
 * a provider and how often.
 */
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
let server: TestServer;
let admin: ApiClient;
let first: string;
let second: string;

const client = (secret: string) => openAiClient(server.url, secret);
const chatCalls = () => mock.calls.filter((call) => call.path.endsWith('/chat/completions'));

beforeAll(async () => {
  mock = await createMockModelServer();
  server = await startTestServer({
    providers: { mock: { type: 'openai-compatible', baseUrl: mock.url } },
    routes: [
      { name: 'platform-cached', deployments: [{ model: 'mock:mock-model' }] },
      { name: 'uncached', deployments: [{ model: 'mock:mock-model' }] },
    ],
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'cache-format');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  first = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  second = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  for (const route of [
    { name: 'cached', deployments: [{ model: 'mock:mock-model' }], cache: { ttlSeconds: 60 } },
    {
      name: 'shared',
      deployments: [{ model: 'mock:mock-model' }],
      cache: { ttlSeconds: 60, scope: 'tenant' },
    },
  ]) {
    const created = await admin.post('/v1/model-routes', route);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
  }
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('response_format', () => {
  it('makes the local model answer a JSON object for json_object', async () => {
    const completion = await client(first).chat.completions.create({
      model: 'local',
      messages: [{ role: 'user', content: 'hello json' }],
      response_format: { type: 'json_object' },
    });
    const content = completion.choices[0]?.message.content ?? '';
    expect(JSON.parse(content)).toEqual({ answer: 'You said: hello json' });
  });

  it('makes the local model answer in the shape of a json_schema, streaming too', async () => {
    const request = {
      model: 'local',
      messages: [{ role: 'user' as const, content: 'weather please' }],
      response_format: {
        type: 'json_schema' as const,
        json_schema: {
          name: 'weather',
          schema: {
            type: 'object',
            properties: {
              city: { type: 'string' },
              celsius: { type: 'number' },
              sky: { enum: ['clear', 'cloudy'] },
              tags: { type: 'array', items: { type: 'string' } },
            },
            required: ['city', 'celsius', 'sky', 'tags'],
          },
        },
      },
    };
    const completion = await client(first).chat.completions.create(request);
    const expected = {
      city: 'You said: weather please',
      celsius: 0,
      sky: 'clear',
      tags: ['You said: weather please'],
    };
    expect(JSON.parse(completion.choices[0]?.message.content ?? '')).toEqual(expected);
    const chunks = await collect(
      await client(first).chat.completions.create({ ...request, stream: true }),
    );
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
    expect(JSON.parse(text)).toEqual(expected);
  });

  it('passes json_schema to the provider and calls it without streaming when the client does not stream', async () => {
    const schema = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] };
    const before = chatCalls().length;
    await client(first).chat.completions.create({
      model: 'uncached',
      messages: [{ role: 'user', content: 'structured' }],
      response_format: { type: 'json_schema', json_schema: { name: 'thing', schema } },
    });
    const sent = chatCalls()[before]?.body as Record<string, unknown>;
    expect(sent['stream']).not.toBe(true);
    expect(sent['response_format']).toMatchObject({
      type: 'json_schema',
      json_schema: { name: 'thing', schema, strict: false },
    });
    const before2 = chatCalls().length;
    await client(first).chat.completions.create({
      model: 'uncached',
      messages: [{ role: 'user', content: 'any json' }],
      response_format: { type: 'json_object' },
    });
    const sent2 = chatCalls()[before2]?.body as Record<string, unknown>;
    expect(sent2['response_format']).toEqual({ type: 'json_object' });
  });
});

/** A completion and the response's `x-brigade-cache` header. */
async function ask(
  secret: string,
  model: string,
  prompt: string | { readonly content: string; readonly headers: Record<string, string> },
) {
  const { content, headers } =
    typeof prompt === 'string' ? { content: prompt, headers: {} } : prompt;
  const { data, response } = await client(secret)
    .chat.completions.create({ model, messages: [{ role: 'user', content }] }, { headers })
    .withResponse();
  return { text: data.choices[0]?.message.content, cache: response.headers.get('x-brigade-cache') };
}

describe('tool messages', () => {
  it('hands a provider each tool message’s content exactly as the client sent it', async () => {
    mock.reset();
    for (const stream of [false, true]) {
      const request = {
        model: 'mock:mock-model',
        messages: [
          { role: 'user' as const, content: 'weather?' },
          {
            role: 'assistant' as const,
            content: null,
            tool_calls: [
              {
                id: 'c1',
                type: 'function' as const,
                function: { name: 'get_weather', arguments: '{}' },
              },
            ],
          },
          { role: 'tool' as const, tool_call_id: 'c1', content: '{"temp":20}' },
        ],
        tools: [{ type: 'function' as const, function: { name: 'get_weather', parameters: {} } }],
      };
      if (stream)
        await collect(await client(first).chat.completions.create({ ...request, stream }));
      else await client(first).chat.completions.create(request);
    }
    const sent = chatCalls().map(
      (call) => (call.body as { messages: { role: string; content: unknown }[] }).messages,
    );
    expect(sent).toHaveLength(2);
    for (const messages of sent)
      expect(messages.find((message) => message.role === 'tool')?.content).toBe('{"temp":20}');
  });
});

describe('a json_schema in the budget', () => {
  it('counts the schema in the worst case a budget reserves: a huge one cannot ride free', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const tenantId = await seedTenant(operator, 'schema-budget');
    const owner = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    const member = await seedUser(operator, { tenantId, role: 'member' });
    // mock-model is priced nowhere: the unknown-model price, $10 per million input tokens.
    const policy = await owner.post('/v1/policies', {
      level: 'user',
      subjectId: member.userId,
      limits: { budget: { amountUsd: 0.05, period: 'day' } },
    });
    expect(policy.status).toBe(201);
    const ask = (responseFormat?: object) =>
      apiClient(server.url, member.secret).post<{ error?: { code: string } }>(
        '/v1/chat/completions',
        {
          model: 'mock:mock-model',
          max_tokens: 16,
          messages: [{ role: 'user', content: 'hi' }],
          ...(responseFormat === undefined ? {} : { response_format: responseFormat }),
        },
      );
    expect((await ask()).status).toBe(200);
    // ~80 KB of schema: some 80,000 tokens at most, $0.80 at that price.
    const properties = Object.fromEntries(
      Array.from({ length: 800 }, (_, index) => [
        `field_${index}`,
        { type: 'string', description: 'x'.repeat(80) },
      ]),
    );
    const before = chatCalls().length;
    const refused = await ask({
      type: 'json_schema',
      json_schema: { name: 'big', schema: { type: 'object', properties } },
    });
    expect(refused.status).toBe(429);
    expect(refused.body.error?.code).toBe('insufficient_quota');
    expect(chatCalls().length).toBe(before);
  });
});

describe('response cache', () => {
  it('serves a user their own cached answer and never another user’s', async () => {
    const before = chatCalls().length;
    expect(await ask(first, 'cached', 'same prompt')).toEqual({
      text: 'echo: same prompt',
      cache: 'miss',
    });
    expect(await ask(first, 'cached', 'same prompt')).toEqual({
      text: 'echo: same prompt',
      cache: 'hit',
    });
    expect(chatCalls().length).toBe(before + 1);
    // Same tenant, same route, same prompt, another user: a miss, and the provider is called.
    expect((await ask(second, 'cached', 'same prompt')).cache).toBe('miss');
    expect(chatCalls().length).toBe(before + 2);
    // A different request is a different key.
    expect((await ask(first, 'cached', 'another prompt')).cache).toBe('miss');
  });

  it('shares answers across the tenant only when the route says scope tenant', async () => {
    const before = chatCalls().length;
    expect((await ask(first, 'shared', 'tenant prompt')).cache).toBe('miss');
    expect((await ask(second, 'shared', 'tenant prompt')).cache).toBe('hit');
    expect(chatCalls().length).toBe(before + 1);
  });

  it('is bypassed with Cache-Control: no-cache or x-brigade-cache: bypass', async () => {
    await ask(first, 'cached', 'bypass prompt');
    const before = chatCalls().length;
    expect(
      (
        await ask(first, 'cached', {
          content: 'bypass prompt',
          headers: { 'cache-control': 'no-cache' },
        })
      ).cache,
    ).toBe('bypass');
    expect(
      (
        await ask(first, 'cached', {
          content: 'bypass prompt',
          headers: { 'x-brigade-cache': 'bypass' },
        })
      ).cache,
    ).toBe('bypass');
    expect(chatCalls().length).toBe(before + 2);
    expect((await ask(first, 'cached', 'bypass prompt')).cache).toBe('hit');
  });

  it('replays a hit as a stream, and says nothing on routes without a cache', async () => {
    await ask(first, 'cached', 'stream me');
    const before = chatCalls().length;
    const { data, response } = await client(first)
      .chat.completions.create({
        model: 'cached',
        messages: [{ role: 'user', content: 'stream me' }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const chunks = await collect(data);
    expect(response.headers.get('x-brigade-cache')).toBe('hit');
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('')).toBe(
      'echo: stream me',
    );
    expect(chunks.at(-1)?.usage?.completion_tokens).toBeGreaterThan(0);
    expect(chatCalls().length).toBe(before);
    expect((await ask(first, 'uncached', 'plain')).cache).toBeNull();
    expect((await ask(first, 'platform-cached', 'plain')).cache).toBeNull();
  });

  it('records hits as usage of provider cache at no cost', async () => {
    await ask(second, 'cached', 'metered prompt');
    await ask(second, 'cached', 'metered prompt');
    const usage = await apiClient(server.url, second).get<{
      data: { provider?: string | null; requests: number; costUsd: number }[];
    }>('/v1/usage?groupBy=provider');
    expect(usage.status).toBe(200);
    const cache = usage.body.data.find((row) => row.provider === 'cache');
    expect(cache?.requests).toBeGreaterThanOrEqual(1);
    expect(cache?.costUsd).toBe(0);
  });

  it('serves no answer of a route’s old models after the route changed them', async () => {
    const created = await admin.post<{ id: string }>('/v1/model-routes', {
      name: 'changing',
      deployments: [{ model: 'mock:mock-model' }],
      cache: { ttlSeconds: 60 },
    });
    expect(created.status).toBe(201);
    expect((await ask(first, 'changing', 'stale test')).cache).toBe('miss');
    expect((await ask(first, 'changing', 'stale test')).cache).toBe('hit');
    const changed = await admin.request('PATCH', `/v1/model-routes/${created.body.id}`, {
      deployments: [{ model: 'local' }],
    });
    expect(changed.status).toBe(200);
    // The gateway holds a tenant's routes for up to 2 s.
    let answer = await ask(first, 'changing', 'stale test');
    for (let tries = 0; tries < 30 && answer.cache === 'hit'; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      answer = await ask(first, 'changing', 'stale test');
    }
    expect(answer).toEqual({ text: 'You said: stale test', cache: 'miss' });
  });

  it('refuses an invalid cache setting on a route', async () => {
    const refused = await admin.post('/v1/model-routes', {
      name: 'bad-cache',
      deployments: [{ model: 'local' }],
      cache: { ttlSeconds: 0, scope: 'everyone' },
    });
    expect(refused.status).toBe(422);
  });
});

void OpenAI;
