import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from './support/api-client.ts';
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
