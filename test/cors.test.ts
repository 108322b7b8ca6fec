import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/** A browser client on an allowed origin: what it may send, and what it may read back. */
let server: TestServer;
let secret: string;
const origin = 'https://app.example.test';

beforeAll(async () => {
  server = await startTestServer({ server: { cors: { origins: [origin] } } });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'cors');
  secret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
});

afterAll(async () => {
  await server?.stop();
});

describe('CORS', () => {
  it('lets an allowed origin send the tenant header and read ids and limits back', async () => {
    const preflight = await fetch(`${server.url}/v1/me`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization, x-brigade-tenant',
      },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(origin);
    const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase();
    expect(allowed).toContain('x-brigade-tenant');

    const response = await fetch(`${server.url}/v1/me`, {
      headers: { origin, authorization: `Bearer ${secret}` },
    });
    expect(response.status).toBe(200);
    const exposed = (response.headers.get('access-control-expose-headers') ?? '')
      .toLowerCase()
      .split(/\s*,\s*/);
    for (const header of ['x-request-id', 'x-trace-id', 'retry-after', 'ratelimit'])
      expect(exposed).toContain(header);
  });

  it('answers a foreign origin without allowing it', async () => {
    const response = await fetch(`${server.url}/v1/me`, {
      headers: { origin: 'https://evil.example.test', authorization: `Bearer ${secret}` },
    });
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
  });
});
