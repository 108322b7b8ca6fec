import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Model names are the caller's choice (`<provider>:<anything>`): only the names the operator
 * configured become metric labels, and the others reach no span unredacted.
 */
let mock: MockModelServer;
let server: TestServer;
let member: { userId: string; secret: string };
let otherTenantMember: { userId: string; secret: string };

beforeAll(async () => {
  mock = await createMockModelServer({ apiKey: 'mock-key' });
  server = await startTestServer(
    {
      providers: { mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_KEY' } },
      limits: { requestsPerMinute: { key: 1_000_000, user: 1_000_000, tenant: 1_000_000 } },
    },
    { env: { MOCK_KEY: 'mock-key' } },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantA = await seedTenant(operator, 'labels-a');
  const tenantB = await seedTenant(operator, 'labels-b');
  member = await seedUser(operator, { tenantId: tenantA, role: 'member' });
  otherTenantMember = await seedUser(operator, { tenantId: tenantB, role: 'member' });
});

afterAll(async () => {
  await server?.stop();
  await mock?.close();
});

async function complete(secret: string, model: string): Promise<number> {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 }),
  });
  await response.arrayBuffer();
  return response.status;
}

async function scrape(): Promise<string> {
  const response = await fetch(`${server.url}/metrics`, {
    headers: { authorization: `Bearer ${testOperatorKey}` },
  });
  return response.text();
}

const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

describe('model names in metrics and spans', () => {
  it('labels only configured model names, whatever other tenants call', async () => {
    const chosen = [
      `mock:${member.userId}`,
      'mock:user-alice@example.com',
      `mock:${otherTenantMember.secret}`,
      'mock:ghp_ROUTECANARY0123456789abcdefghijklmnopqrstu',
    ];
    for (const model of chosen) expect(await complete(otherTenantMember.secret, model)).toBe(200);
    // More distinct names than any cap: they must not crowd out another tenant's models.
    for (let batch = 0; batch < 21; batch += 1)
      await Promise.all(
        Array.from({ length: 10 }, (_, index) =>
          complete(otherTenantMember.secret, `mock:junk-${batch * 10 + index}`),
        ),
      );
    expect(await complete(member.secret, 'mock:gpt-4o')).toBe(200);
    const text = await scrape();
    expect(text).toMatch(
      /brigade_model_calls_total\{provider="mock",model="mock:gpt-4o",status="ok"\} 1\n/,
    );
    expect(text).toMatch(
      /brigade_model_calls_total\{provider="mock",model="mock:other",status="ok"\} 214\n/,
    );
    expect(text).toMatch(/brigade_model_breakers\{route="mock:other",deployment="0"/);
    expect(text).not.toMatch(uuid);
    expect(text).not.toContain('alice');
    expect(text).not.toContain(otherTenantMember.secret);
    expect(text).not.toContain('ROUTECANARY');
    expect(text).not.toContain('junk');
  });

  it('redacts caller-chosen model names in span names and attributes', async () => {
    const client: ApiClient = apiClient(server.url, member.secret);
    const models = [
      `mock:${otherTenantMember.userId}`,
      'mock:user-alice@example.com',
      `mock:${member.secret}`,
    ];
    for (const model of models) expect(await complete(member.secret, model)).toBe(200);
    type Span = { name: string; attributes: Record<string, unknown> };
    let chats: Span[] = [];
    for (let attempt = 0; attempt < 100 && chats.length < 3; attempt += 1) {
      const exported = await client.get<{ spans: Span[] }>('/v1/me/export');
      chats = exported.body.spans.filter(
        (span) => span.name.startsWith('chat ') && span.name !== 'chat mock:gpt-4o',
      );
      if (chats.length < 3) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(chats.map((span) => span.name).sort()).toEqual([
      'chat mock:[email]',
      'chat mock:[id]',
      'chat mock:[redacted]',
    ]);
    const seen = JSON.stringify(chats);
    expect(seen).not.toContain(otherTenantMember.userId);
    expect(seen).not.toContain('alice@example.com');
    expect(seen).not.toContain(member.secret);
    for (const span of chats) {
      expect(span.attributes['gen_ai.request.model']).toBe(span.name.slice('chat '.length));
      expect(span.attributes['gen_ai.response.model']).toBe(span.name.slice('chat '.length));
    }
  });
});
