import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The HTTP layer's answers to requests it refuses: the headers every error carries, requests
 * refused before authentication or by Node's parser, missing bodies and unknown parameters.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let member: { userId: string; keyId: string; secret: string };

beforeAll(async () => {
  server = await startTestServer({
    server: { bodyLimitBytes: 2048 },
    limits: { requestsPerMinute: { key: 3, user: 1000, tenant: 1000 } },
  });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'edges');
  member = await seedUser(operator, { tenantId, role: 'member' });
});

afterAll(async () => {
  await server?.stop();
});

/** Sends a request with an X-Request-Id of its own and returns the response. */
function send(
  path: string,
  init: { method?: string; credential?: string; body?: string; requestId: string },
): Promise<Response> {
  const headers: Record<string, string> = { 'x-request-id': init.requestId };
  if (init.credential !== undefined) headers['authorization'] = `Bearer ${init.credential}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${server.url}${path}`, {
    method: init.method ?? 'GET',
    headers,
    ...(init.body === undefined ? {} : { body: init.body }),
  });
}

describe('request ids', () => {
  it('echo the client’s X-Request-Id on every error response, not only on successes', async () => {
    const key = testOperatorKey;
    const cases: { status: number; response: Promise<Response> }[] = [
      { status: 200, response: send('/v1/me', { credential: key, requestId: 'ok-1' }) },
      { status: 401, response: send('/v1/me', { requestId: 'anonymous-1' }) },
      {
        status: 404,
        response: send('/v1/tenants/00000000-0000-4000-8000-000000000000', {
          credential: key,
          requestId: 'missing-1',
        }),
      },
      { status: 404, response: send('/v1/no-such-route', { credential: key, requestId: 'r-1' }) },
      {
        status: 422,
        response: send('/v1/tenants', {
          method: 'POST',
          credential: key,
          body: '{}',
          requestId: 'v-1',
        }),
      },
      {
        status: 400,
        response: send('/v1/tenants', {
          method: 'POST',
          credential: key,
          body: '{x',
          requestId: 'j-1',
        }),
      },
      {
        status: 413,
        response: send('/v1/tenants', {
          method: 'POST',
          body: JSON.stringify({ name: 'x'.repeat(4096) }),
          requestId: 'big-1',
        }),
      },
    ];
    for (const [index, entry] of cases.entries()) {
      const response = await entry.response;
      expect(response.status, `case ${index}`).toBe(entry.status);
      const body = (await response.clone().json()) as { requestId?: string };
      const sent = body.requestId ?? 'ok-1';
      expect(sent, `case ${index}`).toMatch(/-1$/);
      expect(response.headers.get('x-request-id'), `case ${index}`).toBe(sent);
    }
  });

  it('carry the request id on a 429, matching the one in the body', async () => {
    let limited: Response | undefined;
    for (let attempt = 0; attempt < 6 && limited === undefined; attempt += 1) {
      const response = await send('/v1/me', { credential: member.secret, requestId: 'limit-1' });
      if (response.status === 429) limited = response;
      else await response.text();
    }
    expect(limited?.status).toBe(429);
    expect(limited?.headers.get('x-request-id')).toBe('limit-1');
    expect(await limited?.json()).toMatchObject({ requestId: 'limit-1' });
  });

  it('generate one for an error when the client sent none', async () => {
    const response = await fetch(`${server.url}/v1/me`);
    const body = (await response.json()) as { requestId: string };
    expect(response.status).toBe(401);
    expect(response.headers.get('x-request-id')).toBe(body.requestId);
  });
});

describe('authentication challenges', () => {
  it('carry no error code when the request had no bearer credential (RFC 6750 §3.1)', async () => {
    for (const headers of [{}, { authorization: 'Basic dXNlcjpwYXNz' }]) {
      for (const path of ['/v1/me', '/v1/models']) {
        const response = await fetch(`${server.url}${path}`, { headers });
        await response.text();
        expect(response.status, path).toBe(401);
        expect(response.headers.get('www-authenticate'), path).toBe('Bearer realm="brigade"');
      }
    }
  });

  it('say invalid_token when the bearer credential was refused', async () => {
    for (const authorization of [`Bearer brg_${'A'.repeat(43)}`, 'Bearer a b']) {
      const response = await fetch(`${server.url}/v1/me`, { headers: { authorization } });
      await response.text();
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toBe(
        'Bearer realm="brigade", error="invalid_token"',
      );
    }
  });
});
