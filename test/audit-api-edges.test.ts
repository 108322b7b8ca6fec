import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * The edges of the audit and usage operations: the operator naming a tenant that does not
 * exist.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;

const unknownTenant = '00000000-0000-4000-8000-000000000000';

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'audit-edges');
});

afterAll(async () => {
  await server?.stop();
});

describe('the operator naming a tenant that does not exist', () => {
  it('gets 404 tenant_not_found from the audit operations, not an empty intact log', async () => {
    for (const [method, path] of [
      ['GET', `/v1/tenants/${unknownTenant}/audit-events`],
      ['POST', `/v1/tenants/${unknownTenant}/audit/verify`],
      ['GET', `/v1/tenants/${unknownTenant}/audit/checkpoints`],
    ] as const) {
      const response = await operator.request<{ code: string }>(method, path);
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(response.body.code).toBe('tenant_not_found');
    }
    // A tenant that exists still answers.
    const known = await operator.post<{ ok: boolean }>(`/v1/tenants/${tenantId}/audit/verify`);
    expect(known.status).toBe(200);
    expect(known.body.ok).toBe(true);
  });

  it('gets 404 tenant_not_found from the usage report and its export, not zeros', async () => {
    for (const path of [
      `/v1/usage?tenantId=${unknownTenant}`,
      `/v1/usage/export?tenantId=${unknownTenant}`,
    ]) {
      const response = await operator.get<{ code: string }>(path);
      expect(response.status, path).toBe(404);
      expect(response.body.code).toBe('tenant_not_found');
    }
    expect((await operator.get(`/v1/usage?tenantId=${tenantId}`)).status).toBe(200);
  });
});
