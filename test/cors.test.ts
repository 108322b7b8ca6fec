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

/** A preflight of a chat completion from `from`, asking to send `headers`. */
function preflightOf(from: string, headers: string): Promise<Response> {
  return fetch(`${server.url}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: {
      origin: from,
      'access-control-request-method': 'POST',
      'access-control-request-headers': headers,
    },
  });
}

/** A comma-separated header value as lower-case names. */
const listOf = (value: string | null): string[] => (value ?? '').toLowerCase().split(/\s*,\s*/);

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
    for (const header of [
      'x-request-id',
      'x-trace-id',
      'retry-after',
      'ratelimit',
      'x-brigade-cache',
      'x-should-retry',
      'www-authenticate',
    ])
      expect(exposed).toContain(header);
  });

  it('grants an allowed origin the headers its client sends: cache bypass, the openai SDK’s', async () => {
    const asked = [
      'authorization',
      'content-type',
      'x-brigade-cache',
      'cache-control',
      'x-stainless-os',
      'x-stainless-retry-count',
    ];
    const preflight = await preflightOf(origin, asked.join(', '));
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(origin);
    expect(listOf(preflight.headers.get('access-control-allow-headers'))).toEqual(asked);
    // The answer depends on what was asked: caches must keep them apart.
    expect(listOf(preflight.headers.get('vary'))).toContain('access-control-request-headers');
  });

  it('answers a request for anything but header names with the fixed list', async () => {
    const preflight = await preflightOf(origin, 'authorization, x-a b, (x-c)');
    expect(preflight.headers.get('access-control-allow-origin')).toBe(origin);
    const allowed = listOf(preflight.headers.get('access-control-allow-headers'));
    expect(allowed).toEqual(expect.arrayContaining(['x-brigade-cache', 'cache-control']));
    expect(allowed).not.toContain('x-a b');
  });

  it('grants a foreign origin’s preflight nothing it asked for beyond the fixed list', async () => {
    const preflight = await preflightOf(
      'https://evil.example.test',
      'authorization, x-stainless-os',
    );
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(listOf(preflight.headers.get('access-control-allow-headers'))).not.toContain(
      'x-stainless-os',
    );
  });

  it('answers a foreign origin without allowing it', async () => {
    const response = await fetch(`${server.url}/v1/me`, {
      headers: { origin: 'https://evil.example.test', authorization: `Bearer ${secret}` },
    });
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
  });
});
