import { connect } from 'node:net';
import { Ajv2020 } from 'ajv/dist/2020.js';
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

/** Sends `raw` on a fresh connection and returns everything the server wrote back. */
function rawExchange(raw: string): Promise<string> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: hostname, port: Number(port) }, () => socket.write(raw));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    setTimeout(() => reject(new Error('no answer')), 5000).unref();
  });
}

/** Splits a raw HTTP/1.1 response into its status, lower-cased headers and parsed body. */
function parseRaw(text: string): { status: number; headers: Map<string, string>; body: unknown } {
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = new Map(
    lines.map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()] as const;
    }),
  );
  return { status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(body) };
}

describe('requests Node’s parser refuses', () => {
  it('answers oversized headers with a 431 problem document', async () => {
    const response = await fetch(`${server.url}/v1/me`, {
      headers: { authorization: `Bearer brg_${'a'.repeat(60_000)}` },
    }).catch((error: unknown) => error);
    // fetch may see the connection closed under its unsent headers; a raw socket sees it all.
    if (response instanceof Response) expect(response.status).toBe(431);
    const raw = parseRaw(
      await rawExchange(
        `GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Padding: ${'a'.repeat(60_000)}\r\n\r\n`,
      ),
    );
    expect(raw.status).toBe(431);
    expect(raw.headers.get('content-type')).toBe('application/problem+json');
    expect(raw.headers.get('x-request-id')).toMatch(/^[\w-]{36}$/);
    expect(raw.body).toMatchObject({ status: 431, code: 'headers_too_large' });
  });

  it('answers a malformed request with a 400 problem document', async () => {
    const raw = parseRaw(await rawExchange('GET /v1/me HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'));
    expect(raw.status).toBe(400);
    expect(raw.headers.get('content-type')).toBe('application/problem+json');
    expect(raw.body).toMatchObject({ status: 400, code: 'bad_request' });
  });
});

describe('required request bodies', () => {
  it('refuse every operation whose body is required when none is sent, with or without a Content-Type', async () => {
    const document = (
      await operator.get<{
        paths: Record<
          string,
          Record<string, { operationId: string; requestBody?: { required?: boolean } }>
        >;
      }>('/openapi.json')
    ).body;
    const id = '00000000-0000-4000-8000-000000000000';
    let checked = 0;
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (operation.requestBody?.required !== true) continue;
        const url = `${server.url}${path.replace(/\{[^}]+\}/g, id)}`;
        for (const headers of [{}, { 'content-type': 'application/json' }]) {
          const response = await fetch(url, {
            method: method.toUpperCase(),
            headers: { authorization: `Bearer ${testOperatorKey}`, ...headers },
          });
          const body = (await response.json()) as { code?: string; error?: { code?: string } };
          expect(response.status, `${operation.operationId} ${JSON.stringify(headers)}`).toBe(400);
          expect(body.code ?? body.error?.code, operation.operationId).toBe('invalid_json');
        }
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it('still serve operations that take no body when none is sent', async () => {
    const response = await operator.post(`/v1/tenants/${tenantId}/audit/verify`);
    expect(response.status).toBe(200);
  });
});

describe('request bodies that are not UTF-8', () => {
  /** `{"name":"` + bytes + `"}`: C3 28 is a broken two-byte sequence, FF FE never UTF-8. */
  const badBody = (bytes: number[]) =>
    Buffer.concat([Buffer.from('{"name":"a'), Buffer.from(bytes), Buffer.from('"}')]);

  it('are refused with 400 invalid_json on every operation that takes one, OpenAI paths included', async () => {
    const document = (
      await operator.get<{
        paths: Record<string, Record<string, { operationId: string; requestBody?: unknown }>>;
      }>('/openapi.json')
    ).body;
    const id = '00000000-0000-4000-8000-000000000000';
    let checked = 0;
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (operation.requestBody === undefined) continue;
        const response = await fetch(`${server.url}${path.replace(/\{[^}]+\}/g, id)}`, {
          method: method.toUpperCase(),
          headers: {
            authorization: `Bearer ${testOperatorKey}`,
            'content-type': 'application/json',
          },
          body: badBody([0xc3, 0x28]),
        });
        const body = (await response.json()) as {
          code?: string;
          detail?: string;
          error?: { code?: string; message?: string };
        };
        expect(response.status, operation.operationId).toBe(400);
        expect(body.code ?? body.error?.code, operation.operationId).toBe('invalid_json');
        expect(body.detail ?? body.error?.message, operation.operationId).toContain('UTF-8');
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it('write nothing, and a body holding U+FFFD itself as UTF-8 is still accepted', async () => {
    const users = `/v1/tenants/${tenantId}/users`;
    const before = (await operator.get<{ data: unknown[] }>(`${users}?limit=100`)).body.data;
    for (const [path, bytes] of [
      [users, [0xc3, 0x28]],
      ['/v1/tenants', [0xff, 0xfe]],
      [users, [0xed, 0xa0, 0x80]], // an encoded surrogate, not UTF-8
    ] as const) {
      const body = Buffer.concat([
        Buffer.from(path === users ? '{"displayName":"a' : '{"slug":"utf8-bad","name":"a'),
        Buffer.from(bytes),
        Buffer.from('"}'),
      ]);
      const response = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${testOperatorKey}`, 'content-type': 'application/json' },
        body,
      });
      expect(response.status, path).toBe(400);
      expect(response.headers.get('content-type')).toBe('application/problem+json');
      expect(await response.json()).toMatchObject({ code: 'invalid_json' });
    }
    expect((await operator.get<{ data: unknown[] }>(`${users}?limit=100`)).body.data).toEqual(
      before,
    );
    expect(JSON.stringify((await operator.get('/v1/tenants?limit=100')).body)).not.toContain(
      'utf8-bad',
    );
    const replacement = await operator.post<{ displayName: string }>(users, {
      displayName: 'a\uFFFDb',
    });
    expect(replacement.status).toBe(201);
    expect(replacement.body.displayName).toBe('a\uFFFDb');
  });
});

describe('query parameters', () => {
  it('are refused when the operation takes none, as unknown ones are on list operations', async () => {
    const user = `/v1/tenants/${tenantId}/users/${member.userId}`;
    const cases: [string, string, unknown?][] = [
      ['GET', '/v1/me?foo=1'],
      ['GET', `/v1/tenants/${tenantId}?foo=1`],
      ['GET', `${user}?foo=1`],
      ['POST', `/v1/tenants/${tenantId}/users?foo=1`, { email: 'query@edges.test' }],
      ['POST', '/v1/tenants?foo=1', { slug: 'query-edges', name: 'q' }],
      ['DELETE', `${user}/api-keys/${member.keyId}?foo=1`],
      ['GET', `/v1/tenants?foo=1`],
    ];
    for (const [method, path, body] of cases) {
      const response = await operator.request<{ code: string; errors: { path: string }[] }>(
        method,
        path,
        body,
      );
      expect(response.status, `${method} ${path}`).toBe(422);
      expect(response.body.errors, path).toEqual([{ path: 'query.foo', message: 'unknown field' }]);
    }
    // Nothing was done by the refused requests.
    const keys = await operator.get<{ data: { id: string; revokedAt: string | null }[] }>(
      `${user}/api-keys`,
    );
    expect(keys.body.data.find((key) => key.id === member.keyId)?.revokedAt).toBeNull();
    const users = await operator.get<{ data: { email: string }[] }>(
      `/v1/tenants/${tenantId}/users`,
    );
    expect(users.body.data.map((entry) => entry.email)).not.toContain('query@edges.test');
  });
});

describe('patterns of the served OpenAPI document', () => {
  it('are plain ECMAScript patterns, and the documented consent scopes match them', async () => {
    const document = (await (await fetch(`${server.url}/openapi.json`)).json()) as Record<
      string,
      unknown
    >;
    const patterns: string[] = [];
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (typeof value === 'object' && value !== null)
        for (const [key, inner] of Object.entries(value)) {
          if (key === 'pattern' && typeof inner === 'string') patterns.push(inner);
          else walk(inner);
        }
    };
    walk(document);
    expect(patterns.length).toBeGreaterThan(5);
    for (const pattern of patterns) {
      expect(() => new RegExp(pattern, 'u'), pattern).not.toThrow();
      // A JavaScript literal's flags (`/i`) are not part of a JSON Schema pattern.
      expect(pattern, pattern).not.toMatch(/\/[dgimsuvy]+$/);
    }
    const ajv = new Ajv2020({ strict: false, validateFormats: false });
    ajv.addSchema(document, 'openapi.json');
    const validate = ajv.compile({ $ref: 'openapi.json#/components/schemas/GrantConsent' });
    for (const example of [
      { purpose: 'long_term_memory', scope: '*', version: '2025-01' },
      { purpose: 'content_capture', scope: '6f04040e-b691-4d26-82a5-47b49198bea7', version: '1' },
      { purpose: 'content_capture', scope: '6F04040E-B691-4D26-82A5-47B49198BEA7', version: '1' },
      { purpose: 'tool:calculator', version: '1' },
    ])
      expect(validate(example), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ purpose: 'content_capture', scope: 'everything', version: '1' })).toBe(false);
  });
});
