import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, seedTenant } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A 422 lists every problem of a request, up to 100: 60,000 unknown fields (a 0.7 MB request)
 * answered 2.9 MB listing each.
 */
let server: TestServer;
let tenantId: string;

beforeAll(async () => {
  server = await startTestServer();
  tenantId = await seedTenant(apiClient(server.url, testOperatorKey), 'issue-cap');
});

afterAll(async () => {
  await server?.stop();
});

/** Sends `body` as JSON with the operator key; returns the status and the raw answer. */
async function post(path: string, body: unknown): Promise<{ status: number; text: string }> {
  const response = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${testOperatorKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, text: await response.text() };
}

const unknownFields = (count: number) =>
  Object.fromEntries(Array.from({ length: count }, (_, index) => [`f${index}`, 1]));

describe('a request with very many problems', () => {
  it('lists the first 100, then one saying how many more there are', async () => {
    const { status, text } = await post(`/v1/tenants/${tenantId}/users`, unknownFields(60_000));
    expect(status).toBe(422);
    expect(text.length).toBeLessThan(20_000);
    const { errors } = JSON.parse(text) as { errors: { path: string; message: string }[] };
    expect(errors).toHaveLength(101);
    expect(errors[0]).toEqual({ path: 'body.f0', message: 'unknown field' });
    expect(errors[99]).toEqual({ path: 'body.f99', message: 'unknown field' });
    expect(errors[100]).toEqual({
      path: 'body',
      message: '59900 more issues are not listed (the first 100 are)',
    });
  });

  it('lists all of 100 problems', async () => {
    const { status, text } = await post(`/v1/tenants/${tenantId}/users`, unknownFields(100));
    expect(status).toBe(422);
    expect((JSON.parse(text) as { errors: unknown[] }).errors).toHaveLength(100);
  });
});
