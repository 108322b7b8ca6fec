import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, startLoggedServer } from './support/tool-fixtures.ts';

/** The access log through the public API: one line per request, with no secret in it. */
let server: LoggedServer;

beforeAll(async () => {
  server = await startLoggedServer();
});

afterAll(async () => {
  await server?.stop();
});

type AccessLine = { msg: string; path?: string; status?: number; requestId?: string };

/** The access-log line of the request that answered with `requestId`, once it is written. */
async function accessLine(requestId: string): Promise<AccessLine | undefined> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const line = server.logs
      .flatMap((chunk) => chunk.split('\n'))
      .filter((text) => text.includes('"msg":"request"'))
      .map((text) => JSON.parse(text) as AccessLine)
      .find((candidate) => candidate.requestId === requestId);
    if (line !== undefined) return line;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return undefined;
}

describe('the access log', () => {
  it('redacts a key put in a path and names the request of an error response', async () => {
    const key = 'sk-proj-PATHCANARY1234567890abcdefghij';
    const operator = apiClient(server.url, testOperatorKey);
    const response = await operator.get<{ requestId?: string }>(`/v1/threads/${key}`);
    expect(response.status).toBe(403);
    const requestId = response.headers.get('x-request-id');
    expect(requestId).toBe(response.body.requestId);
    const line = await accessLine(String(requestId));
    expect(line?.status).toBe(403);
    expect(line?.path).toBe('/v1/threads/[redacted]');
    expect(server.logs.join('')).not.toContain('PATHCANARY');
  });

  it('names the request of an unauthenticated one too', async () => {
    const response = await fetch(`${server.url}/v1/threads/brg_${'q'.repeat(30)}`);
    expect(response.status).toBe(401);
    const line = await accessLine(String(response.headers.get('x-request-id')));
    expect(line?.status).toBe(401);
    expect(line?.path).toBe('/v1/threads/[redacted]');
  });
});

describe('a client’s request id', () => {
  it('is kept when short and plain, and replaced when it looks like a credential', async () => {
    const tenantId = await seedTenant(apiClient(server.url, testOperatorKey), 'request-ids');
    const user = await seedUser(apiClient(server.url, testOperatorKey), {
      tenantId,
      role: 'member',
    });
    const send = (requestId: string) =>
      fetch(`${server.url}/v1/me`, {
        headers: { authorization: `Bearer ${user.secret}`, 'x-request-id': requestId },
      });
    const plain = 'client.trace:42_a-b';
    expect((await send(plain)).headers.get('x-request-id')).toBe(plain);
    expect((await accessLine(plain))?.status).toBe(200);
    const canaries = [
      `brg_REQIDCANARY${'f'.repeat(40)}`,
      `sk-proj-REQIDCANARY${'f'.repeat(30)}`,
      `ghp_REQIDCANARY${'f'.repeat(30)}`,
      `REQIDCANARY${'x'.repeat(130)}`,
      'REQIDCANARY@example.com',
    ];
    for (const canary of canaries) {
      const response = await send(canary);
      expect(response.status).toBe(200);
      const replaced = String(response.headers.get('x-request-id'));
      expect(replaced).toMatch(/^[0-9a-f-]{36}$/);
      expect((await accessLine(replaced))?.status).toBe(200);
    }
    expect(server.logs.join('')).not.toContain('REQIDCANARY');
    // Nor on the request's spans, which the user reads in their export.
    const client = apiClient(server.url, user.secret);
    let spans = '';
    for (let attempt = 0; attempt < 100 && !spans.includes(plain); attempt += 1) {
      spans = JSON.stringify((await client.get<{ spans: unknown[] }>('/v1/me/export')).body.spans);
      if (!spans.includes(plain)) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(spans).toContain(`"brigade.request.id":"${plain}"`);
    expect(spans).not.toContain('REQIDCANARY');
  });
});
