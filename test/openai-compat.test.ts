import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer } from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { collect, failureOf, openAiClient, weatherTool } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The OpenAI-compatible API through the official `openai` client: the built-in `local` model
 * (deterministic) for the protocol, the mock provider for faults, and hosted agents.
 */
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
let server: TestServer;
let operator: ApiClient;
let tenantA: string;
let admin: ApiClient;
let memberSecret: string;
let viewerSecret: string;
let otherTenantSecret: string;

const client = (secret: string, maxRetries = 0) => openAiClient(server.url, secret, maxRetries);

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      runs: { pollIntervalMs: 50 },
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  operator = apiClient(server.url, testOperatorKey);
  tenantA = await seedTenant(operator, 'openai-a');
  const tenantB = await seedTenant(operator, 'openai-b');
  admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: tenantA, role: 'admin' })).secret,
  );
  memberSecret = (await seedUser(operator, { tenantId: tenantA, role: 'member' })).secret;
  viewerSecret = (await seedUser(operator, { tenantId: tenantA, role: 'viewer' })).secret;
  const adminB = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: tenantB, role: 'admin' })).secret,
  );
  otherTenantSecret = (await seedUser(operator, { tenantId: tenantB, role: 'member' })).secret;
  expect((await admin.post('/v1/agents', { name: 'helper', model: 'local' })).status).toBe(201);
  expect((await adminB.post('/v1/agents', { name: 'secret-b', model: 'local' })).status).toBe(201);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('POST /v1/chat/completions', () => {
  it('answers a plain request with a chat.completion and its usage', async () => {
    const completion = await client(memberSecret).chat.completions.create({
      model: 'local',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'hello there' }] },
      ],
      temperature: 0.2,
      user: 'ignored',
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.model).toBe('local');
    expect(completion.choices[0]?.message).toMatchObject({
      role: 'assistant',
      content: 'You said: hello there',
    });
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(completion.usage?.completion_tokens).toBe(4);
    expect(completion.usage?.total_tokens).toBe(
      (completion.usage?.prompt_tokens ?? 0) + (completion.usage?.completion_tokens ?? 0),
    );
  });

  it('streams chunks: the role first, deltas, the finish reason, usage, then [DONE]', async () => {
    const stream = await client(memberSecret).chat.completions.create({
      model: 'local',
      messages: [{ role: 'user', content: 'stream this please' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    expect(chunks[0]?.object).toBe('chat.completion.chunk');
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('You said: stream this please');
    const finishes = chunks.flatMap((chunk) =>
      chunk.choices[0]?.finish_reason ? [chunk.choices[0].finish_reason] : [],
    );
    expect(finishes).toEqual(['stop']);
    const last = chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(last?.usage?.completion_tokens).toBe(5);
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
  });

  it('calls a tool and answers from its result (tools round trip)', async () => {
    const openai = client(memberSecret);
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'call get_weather {"city":"Paris"}' },
    ];
    const first = await openai.chat.completions.create({
      model: 'local',
      messages,
      tools: [weatherTool],
      tool_choice: 'auto',
    });
    const choice = first.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    expect(choice?.message.content).toBeNull();
    const call = choice?.message.tool_calls?.[0];
    expect(call?.type).toBe('function');
    if (call?.type !== 'function') throw new Error('no function call');
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' });
    messages.push(choice?.message as OpenAI.ChatCompletionMessageParam, {
      role: 'tool',
      tool_call_id: call.id,
      content: 'sunny, 21 C',
    });
    const second = await openai.chat.completions.create({
      model: 'local',
      messages,
      tools: [weatherTool],
    });
    // The tool's text reaches the model as it was sent, not JSON-encoded again.
    expect(second.choices[0]?.message.content).toBe('get_weather returned: sunny, 21 C');
    expect(second.choices[0]?.finish_reason).toBe('stop');
  });

  it('streams a tool call as tool_calls chunks', async () => {
    const stream = await client(memberSecret).chat.completions.create({
      model: 'local',
      messages: [{ role: 'user', content: 'call get_weather {"city":"Oslo"}' }],
      tools: [weatherTool],
      stream: true,
    });
    const chunks = await collect(stream);
    const calls = chunks.flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? []);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ index: 0, type: 'function' });
    expect(JSON.parse(calls[0]?.function?.arguments ?? '')).toEqual({ city: 'Oslo' });
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls');
  });

  it('passes a provider model through the gateway, streaming or not', async () => {
    mock.reset();
    const openai = client(memberSecret);
    const plain = await openai.chat.completions.create({
      model: 'mock:mock-model',
      messages: [{ role: 'user', content: 'hi mock' }],
    });
    expect(plain.choices[0]?.message.content).toBe('echo: hi mock');
    expect(plain.usage?.prompt_tokens).toBeGreaterThan(0);
    const stream = await openai.chat.completions.create({
      model: 'mock:mock-model',
      messages: [{ role: 'user', content: 'hi stream' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('echo: hi stream');
    expect(mock.calls).toHaveLength(2);
  });

  it('runs a hosted agent named agent:<name>, streaming or not', async () => {
    const openai = client(memberSecret);
    const { data, response } = await openai.chat.completions
      .create({ model: 'agent:helper', messages: [{ role: 'user', content: 'hi agent' }] })
      .withResponse();
    expect(data.choices[0]?.message.content).toBe('You said: hi agent');
    expect(data.usage?.completion_tokens).toBeGreaterThan(0);
    expect(response.headers.get('x-brigade-run-id')).toMatch(/^[0-9a-f-]{36}$/);
    const stream = await openai.chat.completions.create({
      model: 'agent:helper',
      messages: [{ role: 'user', content: 'stream agent' }],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('You said: stream agent');
  });

  it("never runs another tenant's agent: agent:<name> is looked up in the key's tenant", async () => {
    const failure = await failureOf(
      client(memberSecret).chat.completions.create({
        model: 'agent:secret-b',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(failure.status).toBe(404);
    expect(failure.code).toBe('model_not_found');
    const own = await client(otherTenantSecret).chat.completions.create({
      model: 'agent:secret-b',
      messages: [{ role: 'user', content: 'mine' }],
    });
    expect(own.choices[0]?.message.content).toBe('You said: mine');
  });

  it('aborts the provider call when the client disconnects', async () => {
    mock.reset();
    mock.setFaults({ hang: true });
    const controller = new AbortController();
    const stream = client(memberSecret).chat.completions.create(
      { model: 'mock:mock-model', messages: [{ role: 'user', content: 'hang' }], stream: true },
      { signal: controller.signal },
    );
    for (let attempt = 0; attempt < 200 && mock.calls.length === 0; attempt += 1)
      await new Promise((resolve) => setTimeout(resolve, 25));
    controller.abort();
    await stream.catch(() => undefined);
    for (let attempt = 0; attempt < 200 && mock.calls[0]?.outcome === 'pending'; attempt += 1)
      await new Promise((resolve) => setTimeout(resolve, 25));
    mock.setFaults(undefined);
    expect(mock.calls[0]?.outcome).toBe('client-aborted');
  });
});

describe('errors are OpenAI error objects with statuses clients handle', () => {
  it('refuses an unknown key with 401 invalid_api_key (AuthenticationError)', async () => {
    const failure = await failureOf(
      client('brg_not_a_real_key').chat.completions.create({
        model: 'local',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(failure).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(failure.code).toBe('invalid_api_key');
    expect(failure.type).toBe('invalid_request_error');
  });

  it('answers an unknown model with 404 model_not_found', async () => {
    const failure = await failureOf(
      client(memberSecret).chat.completions.create({
        model: 'nowhere:gpt-9',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(failure).toBeInstanceOf(OpenAI.NotFoundError);
    expect(failure.code).toBe('model_not_found');
    expect(failure.param).toBe('model');
  });

  it('answers malformed messages with 400 naming the field', async () => {
    const openai = client(memberSecret);
    const missing = await failureOf(
      openai.chat.completions.create({
        model: 'local',
        messages: [{ role: 'user' } as unknown as OpenAI.ChatCompletionMessageParam],
      }),
    );
    expect(missing).toBeInstanceOf(OpenAI.BadRequestError);
    expect(missing.param).toMatch(/^messages\[0\]/);
    const orphan = await failureOf(
      openai.chat.completions.create({
        model: 'local',
        messages: [{ role: 'tool', tool_call_id: 'call_x', content: 'stray' }],
      }),
    );
    expect(orphan.status).toBe(400);
    expect(orphan.param).toBe('messages[0].tool_call_id');
    const format = await failureOf(
      openai.chat.completions.create({
        model: 'agent:helper',
        messages: [{ role: 'user', content: 'hi' }],
        response_format: { type: 'json_object' },
      }),
    );
    expect(format.status).toBe(400);
    expect(format.param).toBe('response_format');
  });

  it('refuses a viewer (403) and keeps problem+json on other paths', async () => {
    const failure = await failureOf(
      client(viewerSecret).chat.completions.create({
        model: 'local',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(failure).toBeInstanceOf(OpenAI.PermissionDeniedError);
    const other = await fetch(`${server.url}/v1/me`, {
      headers: { authorization: 'Bearer brg_not_a_real_key' },
    });
    expect(other.headers.get('content-type')).toContain('application/problem+json');
  });

  it('answers a provider 5xx with a 5xx, streaming or not', async () => {
    mock.reset();
    mock.setFaults({ status: 503 });
    const openai = client(memberSecret);
    const plain = await failureOf(
      openai.chat.completions.create({
        model: 'mock:mock-model',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    const streamed = await failureOf(
      openai.chat.completions.create({
        model: 'mock:mock-model',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
      }),
    );
    mock.setFaults(undefined);
    expect(plain).toBeInstanceOf(OpenAI.InternalServerError);
    expect(plain.status).toBe(503);
    expect(plain.type).toBe('server_error');
    expect(streamed.status).toBe(503);
  });

  it('ends a stream that fails after its first byte with an error event', async () => {
    mock.reset();
    mock.setFaults({ resetAfterChunks: 2 });
    const stream = await client(memberSecret).chat.completions.create({
      model: 'mock:mock-model',
      messages: [{ role: 'user', content: 'one two three four five six' }],
      stream: true,
    });
    let text = '';
    const failure = await failureOf(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      })(),
    );
    mock.setFaults(undefined);
    expect(text.length).toBeGreaterThan(0);
    expect(failure.message).toContain('provider');
  });

  it('refuses a spent budget with 429 insufficient_quota that clients do not retry', async () => {
    const spender = await seedUser(operator, { tenantId: tenantA, role: 'member' });
    const policy = await admin.post<Created>('/v1/policies', {
      level: 'user',
      subjectId: spender.userId,
      limits: { budget: { amountUsd: 0.000001, period: 'day' } },
    });
    expect(policy.status).toBe(201);
    mock.reset();
    // With the client's default retries: `x-should-retry: false` stops them.
    const failure = await failureOf(
      client(spender.secret, 2).chat.completions.create({
        model: 'mock:mock-model',
        messages: [{ role: 'user', content: 'spend' }],
      }),
    );
    expect(failure).toBeInstanceOf(OpenAI.RateLimitError);
    expect(failure.code).toBe('insufficient_quota');
    expect(failure.headers?.get('x-should-retry')).toBe('false');
    expect(mock.calls).toHaveLength(0);
  });

  it('records usage with source api', async () => {
    const user = await seedUser(operator, { tenantId: tenantA, role: 'member' });
    await client(user.secret).chat.completions.create({
      model: 'local',
      messages: [{ role: 'user', content: 'count me' }],
    });
    const usage = await apiClient(server.url, user.secret).get<{
      data: { source: string; requests: number; outputTokens: number }[];
    }>('/v1/usage?groupBy=source');
    expect(usage.status).toBe(200);
    expect(usage.body.data).toEqual([
      expect.objectContaining({ source: 'api', requests: 1, outputTokens: 4 }),
    ]);
  });
});
