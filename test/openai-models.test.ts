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
import { failureOf, openAiClient } from './support/openai-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * `GET /v1/models` and `GET /v1/models/{model}` through the official `openai` client: what a
 * key may name as `model` — `local`, its tenant's agents as `agent:<name>`, and the model routes
 * it can call (its tenant's own, and the platform's it does not shadow), and when retrieved by
 * id a configured provider's models — and nothing of another tenant.
 */
let mock: Awaited<ReturnType<typeof createMockModelServer>>;
let server: TestServer;
let adminA: ApiClient;
let adminB: ApiClient;
let memberSecret: string;
/** Secrets by what the key may do: a viewer's, and a member's keys with narrowed scopes. */
const narrowed: Record<'viewer' | 'readOnly' | 'modelsOnly' | 'noThreadRead', string> = {
  viewer: '',
  readOnly: '',
  modelsOnly: '',
  noThreadRead: '',
};

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-secret-key' });
  server = await startTestServer(
    {
      providers: {
        mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_API_KEY' },
      },
      routes: [
        { name: 'shared-route', deployments: [{ model: 'mock:mock-model' }] },
        { name: 'shadowed', deployments: [{ model: 'mock:mock-model' }] },
      ],
    },
    { env: { MOCK_API_KEY: 'mock-secret-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantA = await seedTenant(operator, 'models-a');
  const tenantB = await seedTenant(operator, 'models-b');
  adminA = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: tenantA, role: 'admin' })).secret,
  );
  adminB = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: tenantB, role: 'admin' })).secret,
  );
  const member = await seedUser(operator, { tenantId: tenantA, role: 'member' });
  memberSecret = member.secret;
  narrowed.viewer = (await seedUser(operator, { tenantId: tenantA, role: 'viewer' })).secret;
  const scopedKey = async (scopes: string[]) => {
    const key = await operator.post<Created>(
      `/v1/tenants/${tenantA}/users/${member.userId}/api-keys`,
      { name: scopes.join(' '), scopes },
    );
    expect(key.status).toBe(201);
    return key.body.secret as string;
  };
  narrowed.readOnly = await scopedKey(['agent:read']);
  narrowed.modelsOnly = await scopedKey(['thread:write']);
  narrowed.noThreadRead = await scopedKey(['thread:write', 'agent:read']);
  expect((await adminA.post('/v1/agents', { name: 'helper', model: 'local' })).status).toBe(201);
  expect((await adminB.post('/v1/agents', { name: 'secret-b', model: 'local' })).status).toBe(201);
  for (const [owner, name] of [
    [adminA, 'team-route'],
    [adminA, 'shadowed'],
    [adminB, 'b-route'],
  ] as const) {
    const created = await owner.post('/v1/model-routes', {
      name,
      deployments: [{ model: 'mock:mock-model' }],
    });
    expect(created.status).toBe(201);
  }
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

describe('GET /v1/models', () => {
  it("lists local, the key's tenant's agents and the routes it can call, never another tenant's", async () => {
    const models = await openAiClient(server.url, memberSecret).models.list();
    const ids = models.data.map((model) => model.id);
    expect(ids).toEqual(
      expect.arrayContaining(['local', 'agent:helper', 'shared-route', 'team-route', 'shadowed']),
    );
    expect(ids).not.toContain('agent:secret-b');
    expect(ids).not.toContain('b-route');
    expect(models.data[0]).toMatchObject({ id: 'local', object: 'model', owned_by: 'brigade' });
    expect(models.data.find((model) => model.id === 'shared-route')).toMatchObject({
      owned_by: 'platform',
    });
    // A tenant route shadows the platform route of its name, as it does when called.
    expect(models.data.filter((model) => model.id === 'shadowed')).toEqual([
      expect.objectContaining({ owned_by: 'tenant' }),
    ]);
  });

  it('lists only names a completion accepts', async () => {
    const client = openAiClient(server.url, memberSecret);
    const models = await client.models.list();
    for (const { id } of models.data.filter((model) => !model.id.startsWith('agent:'))) {
      const completion = await client.chat.completions.create({
        model: id,
        messages: [{ role: 'user', content: 'hello' }],
      });
      expect(completion.choices[0]?.message.content?.length).toBeGreaterThan(0);
    }
  });

  it('refuses an unknown key as OpenAI does', async () => {
    const failure = await failureOf(openAiClient(server.url, 'brg_nope').models.list());
    expect(failure).toBeInstanceOf(OpenAI.AuthenticationError);
  });
});

describe('GET /v1/models/{model}', () => {
  it('retrieves every listed model as the list shows it', async () => {
    const client = openAiClient(server.url, memberSecret);
    const listed = (await client.models.list()).data;
    expect(listed.length).toBeGreaterThan(4);
    for (const model of listed) expect(await client.models.retrieve(model.id)).toEqual(model);
  });

  it('retrieves a configured provider’s model, its id with a colon and slashes', async () => {
    const client = openAiClient(server.url, memberSecret);
    const id = 'mock:meta-llama/Llama-3-8B';
    // The official client sends the slash as %2F and the colon as it is.
    expect(await client.models.retrieve(id)).toEqual({
      id,
      object: 'model',
      created: 0,
      owned_by: 'platform',
    });
    for (const path of ['mock:meta-llama/Llama-3-8B', 'mock%3Ameta-llama%2FLlama-3-8B']) {
      const response = await fetch(`${server.url}/v1/models/${path}`, {
        headers: { authorization: `Bearer ${memberSecret}` },
      });
      expect(response.status).toBe(200);
      expect(((await response.json()) as { id: string }).id).toBe(id);
    }
    const agent = await fetch(`${server.url}/v1/models/agent%3Ahelper`, {
      headers: { authorization: `Bearer ${memberSecret}` },
    });
    expect(((await agent.json()) as { id: string }).id).toBe('agent:helper');
  });

  it('answers 404 model_not_found for another tenant’s agent or route and unknown names', async () => {
    const client = openAiClient(server.url, memberSecret);
    for (const id of ['agent:secret-b', 'b-route', 'agent:ghost', 'no-such-route', 'nope:x/y']) {
      const failure = await failureOf(client.models.retrieve(id));
      expect(failure, id).toBeInstanceOf(OpenAI.NotFoundError);
      expect(failure.code, id).toBe('model_not_found');
    }
  });

  it('refuses an unknown key as OpenAI does', async () => {
    const failure = await failureOf(openAiClient(server.url, 'brg_nope').models.retrieve('local'));
    expect(failure).toBeInstanceOf(OpenAI.AuthenticationError);
  });
});

describe('the models of a key that may not call them all', () => {
  const everyKind = ['local', 'agent:helper', 'shared-route', 'team-route', 'mock:mock-model'];

  it('are none for a viewer’s key, or one scoped to agent:read: an empty list, and 404s', async () => {
    for (const secret of [narrowed.viewer, narrowed.readOnly]) {
      const client = openAiClient(server.url, secret);
      const models = await client.models.list();
      expect(models.data).toEqual([]);
      for (const id of everyKind) {
        const failure = await failureOf(client.models.retrieve(id));
        expect(failure, id).toBeInstanceOf(OpenAI.NotFoundError);
        expect(failure.code, id).toBe('model_not_found');
        // What the list left out, a completion refuses.
        const refused = await failureOf(
          client.chat.completions.create({
            model: id,
            messages: [{ role: 'user', content: 'hi' }],
          }),
        );
        expect(refused, id).toBeInstanceOf(OpenAI.PermissionDeniedError);
      }
    }
  });

  it('leave out the agents for a key that may call models but not run agents', async () => {
    for (const secret of [narrowed.modelsOnly, narrowed.noThreadRead]) {
      const client = openAiClient(server.url, secret);
      const ids = (await client.models.list()).data.map((model) => model.id);
      expect(ids).toEqual(['local', 'shadowed', 'team-route', 'shared-route']);
      for (const id of ids) {
        expect((await client.models.retrieve(id)).id).toBe(id);
        const answer = await client.chat.completions.create({
          model: id,
          messages: [{ role: 'user', content: 'hi' }],
        });
        expect(answer.choices[0]?.message.content?.length, id).toBeGreaterThan(0);
      }
      expect((await client.models.retrieve('mock:mock-model')).owned_by).toBe('platform');
      const failure = await failureOf(client.models.retrieve('agent:helper'));
      expect(failure.code).toBe('model_not_found');
    }
  });

  it('refuse an agent completion before its run starts when the key could not follow it', async () => {
    const threads = async () =>
      (await apiClient(server.url, memberSecret).get<{ data: unknown[] }>('/v1/threads?limit=100'))
        .body.data.length;
    const before = await threads();
    const refused = await failureOf(
      openAiClient(server.url, narrowed.noThreadRead).chat.completions.create({
        model: 'agent:helper',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    // No thread, no run: the agent did not run (nor cost anything) for a refused request.
    expect(await threads()).toBe(before);
  });
});
