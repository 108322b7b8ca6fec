import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer } from '../src/testing/index.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { collect, failureOf, openAiClient, weatherTool } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Sampling settings and `tool_choice` through `/v1/chat/completions` with the official client:
 * what reaches the provider (the mock records each request body) on the non-streaming direct
 * path and the streaming AI SDK path, what the local model does with them, what is refused, and
 * that the response cache tells requests that differ only in them apart.
 */
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
let server: TestServer;
let client: OpenAI;

const sampling = {
  temperature: 0.2,
  top_p: 0.9,
  stop: ['END'],
  seed: 42,
  presence_penalty: 0.5,
  frequency_penalty: -0.5,
};

/** The body of the provider request whose last message says `text`. */
function providerBody(text: string): Record<string, unknown> {
  const call = mock.calls.find((candidate) => {
    const messages = (candidate.body as { messages?: { content: unknown }[] })?.messages ?? [];
    return JSON.stringify(messages.at(-1)?.content ?? '').includes(text);
  });
  if (call === undefined) throw new Error(`the provider never saw '${text}'`);
  return call.body as Record<string, unknown>;
}

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      routes: [
        { name: 'cached', deployments: [{ model: 'mock:mock-model' }], cache: { ttlSeconds: 60 } },
      ],
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'sampling');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  expect((await admin.post('/v1/agents', { name: 'helper', model: 'local' })).status).toBe(201);
  client = openAiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'member' })).secret,
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('sampling settings and tool_choice reach the provider', () => {
  for (const stream of [false, true]) {
    it(`as OpenAI names them (${stream ? 'streaming, AI SDK' : 'non-streaming, direct'})`, async () => {
      const text = `sampled ${stream}`;
      const request = {
        model: 'mock:mock-model',
        messages: [{ role: 'user' as const, content: text }],
        tools: [weatherTool],
        tool_choice: { type: 'function' as const, function: { name: 'get_weather' } },
        ...sampling,
      };
      if (stream) await collect(await client.chat.completions.create({ ...request, stream }));
      else await client.chat.completions.create(request);
      const body = providerBody(text);
      expect(body).toMatchObject(sampling);
      expect(body['tool_choice']).toEqual({ type: 'function', function: { name: 'get_weather' } });
    });
  }

  it('passes tool_choice required, and sends no setting the client left out', async () => {
    await client.chat.completions.create({
      model: 'mock:mock-model',
      messages: [{ role: 'user', content: 'required call' }],
      tools: [weatherTool],
      tool_choice: 'required',
    });
    expect(providerBody('required call')['tool_choice']).toBe('required');
    await client.chat.completions.create({
      model: 'mock:mock-model',
      messages: [{ role: 'user', content: 'plain call' }],
    });
    const plain = providerBody('plain call');
    for (const field of [...Object.keys(sampling), 'tool_choice'])
      expect(plain).not.toHaveProperty(field);
  });
});

describe('the local model', () => {
  it('calls the tool tool_choice names, with arguments shaped like its schema', async () => {
    const completion = await client.chat.completions.create({
      model: 'local',
      messages: [{ role: 'user', content: 'what is it like in Oslo' }],
      tools: [weatherTool],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const [call] = completion.choices[0]?.message.tool_calls ?? [];
    expect(call).toMatchObject({ type: 'function', function: { name: 'get_weather' } });
    expect(JSON.parse((call as { function: { arguments: string } }).function.arguments)).toEqual({
      city: 'what is it like in Oslo',
    });
    expect(completion.choices[0]?.finish_reason).toBe('tool_calls');
  });

  it('ends its answer before a stop sequence', async () => {
    const completion = await client.chat.completions.create({
      model: 'local',
      messages: [{ role: 'user', content: 'hello wide world' }],
      stop: 'world',
    });
    expect(completion.choices[0]?.message.content).toBe('You said: hello wide ');
  });
});

describe('refused before any provider is called', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    [
      'a tool_choice naming no tool of the request',
      { tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'nope' } } },
      'tool_choice',
    ],
    ['tool_choice required without tools', { tool_choice: 'required' }, 'tool_choice'],
    ['five stop sequences', { stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    ['temperature 3', { temperature: 3 }, 'temperature'],
    ['top_p 2', { top_p: 2 }, 'top_p'],
    ['a fractional seed', { seed: 1.5 }, 'seed'],
  ];
  for (const [what, fields, param] of cases) {
    it(`refuses ${what} with 400 naming ${param}`, async () => {
      const calls = mock.calls.length;
      const failure = await failureOf(
        client.chat.completions.create({
          model: 'mock:mock-model',
          messages: [{ role: 'user', content: 'refused' }],
          ...fields,
        } as never),
      );
      expect(failure.status).toBe(400);
      expect(failure.param).toBe(param);
      expect(mock.calls.length).toBe(calls);
    });
  }

  it('refuses tool_choice required with agent:<name>', async () => {
    const failure = await failureOf(
      client.chat.completions.create({
        model: 'agent:helper',
        messages: [{ role: 'user', content: 'hi' }],
        tool_choice: 'required',
      }),
    );
    expect(failure.status).toBe(400);
    expect(failure.param).toBe('tool_choice');
  });
});

describe('the response cache', () => {
  it('keeps answers to requests that differ only in sampling or tool_choice apart', async () => {
    const ask = async (extra: Record<string, unknown>) => {
      const response = await client.chat.completions
        .create({
          model: 'cached',
          messages: [{ role: 'user', content: 'cache me' }],
          tools: [weatherTool],
          ...extra,
        } as never)
        .withResponse();
      return response.response.headers.get('x-brigade-cache');
    };
    expect(await ask({ temperature: 0 })).toBe('miss');
    expect(await ask({ temperature: 0 })).toBe('hit');
    expect(await ask({ temperature: 1 })).toBe('miss');
    expect(await ask({ temperature: 0, tool_choice: 'required' })).toBe('miss');
  });
});
