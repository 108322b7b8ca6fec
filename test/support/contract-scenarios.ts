import { expect } from 'vitest';
import {
  type ContractWorld,
  expectStatus,
  pricedCallUsd,
  pricedOutputTokens,
} from './contract-world.ts';
import { petstore } from './openapi-fixtures.ts';

/**
 * Success paths of the contract test that need more set-up than a request or two: tools and
 * their neighbours, and the guard rails (a budget crossed by a priced call, its alert and the
 * webhook delivery announcing it). Every request goes through the world's checked clients.
 */

type Id = { id: string };

/** Tools, kill switches, the OpenAPI import, MCP servers and both credential vaults. */
export async function exerciseTools(world: ContractWorld): Promise<void> {
  const { admin, member } = world;
  const tool = expectStatus(
    await admin.client.post<Id>('/v1/tools', {
      name: 'lookup',
      description: 'Looks an item up.',
      risk: 'read',
      urlTemplate: 'https://api.example.com/items/{id}',
      inputSchema: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
    }),
    201,
    'createTool',
  );
  expectStatus(await member.client.get('/v1/tools'), 200, 'listTools');
  expectStatus(await member.client.get(`/v1/tools/${tool.id}`), 200, 'getTool');
  expectStatus(
    await admin.client.patch(`/v1/tools/${tool.id}`, { description: 'Finds an item.' }),
    200,
    'updateTool',
  );
  const block = expectStatus(
    await admin.client.post<Id>('/v1/tool-blocks', { toolName: 'lookup', reason: 'contract' }),
    201,
    'disableTool',
  );
  expectStatus(await admin.client.get('/v1/tool-blocks'), 200, 'listDisabledTools');
  expectStatus(await admin.client.delete(`/v1/tool-blocks/${block.id}`), 204, 'enableTool');
  expectStatus(await admin.client.delete(`/v1/tools/${tool.id}`), 204, 'deleteTool');
  const document = petstore('https://api.example.com');
  const imported = { document, namePrefix: 'pet_', operations: ['listPets', 'createPet'] };
  expectStatus(
    await admin.client.post('/v1/tools/import-openapi', { ...imported, dryRun: true }),
    200,
    'importOpenApiTools (dry run)',
  );
  expectStatus(
    await admin.client.post('/v1/tools/import-openapi', imported),
    201,
    'importOpenApiTools',
  );

  const server = expectStatus(
    await admin.client.post<Id>('/v1/mcp-servers', { name: 'pinger', url: world.mcp.url }),
    201,
    'createMcpServer',
  );
  expectStatus(await member.client.get('/v1/mcp-servers'), 200, 'listMcpServers');
  expectStatus(await admin.client.delete(`/v1/mcp-servers/${server.id}`), 204, 'deleteMcpServer');

  for (const [base, client] of [
    ['/v1/me/credentials', member.client],
    ['/v1/credentials', admin.client],
  ] as const) {
    const credential = expectStatus(
      await client.post<Id>(base, {
        name: 'github',
        secret: 'ghp_contract_secret_0123456789',
        allowedHosts: ['api.github.com'],
      }),
      201,
      `put ${base}`,
    );
    expectStatus(await client.get(base), 200, `list ${base}`);
    expectStatus(await client.delete(`${base}/${credential.id}`), 204, `delete ${base}`);
  }
}

/** Policies, limits, model routes, webhooks, a budget alert with its delivery, and usage. */
export async function exerciseGuardRails(world: ContractWorld): Promise<void> {
  const { admin, member, receiver } = world;
  const policy = expectStatus(
    await admin.client.post<Id>('/v1/policies', {
      level: 'user',
      subjectId: world.member.id,
      limits: {
        budget: { amountUsd: pricedCallUsd * 1.5, period: 'day' },
        runsPerDay: 1000,
        toolCallsPerDay: 1000,
      },
    }),
    201,
    'createPolicy',
  );
  expectStatus(await admin.client.get('/v1/policies'), 200, 'listPolicies');
  expectStatus(await admin.client.get(`/v1/policies/${policy.id}`), 200, 'getPolicy');
  expectStatus(
    await admin.client.patch(`/v1/policies/${policy.id}`, { name: 'member budget' }),
    200,
    'updatePolicy',
  );
  const route = expectStatus(
    await admin.client.post<Id>('/v1/model-routes', {
      name: 'house',
      deployments: [{ model: 'local' }],
    }),
    201,
    'createModelRoute',
  );
  expectStatus(await member.client.get('/v1/model-routes'), 200, 'listModelRoutes');
  expectStatus(await admin.client.get(`/v1/model-routes/${route.id}`), 200, 'getModelRoute');
  expectStatus(
    await admin.client.patch(`/v1/model-routes/${route.id}`, {
      deployments: [{ model: 'local', weight: 2 }],
    }),
    200,
    'updateModelRoute',
  );
  expectStatus(await admin.client.delete(`/v1/model-routes/${route.id}`), 204, 'deleteModelRoute');
  const webhook = expectStatus(
    await admin.client.post<Id>('/v1/webhooks', {
      url: receiver.url,
      events: ['budget.threshold'],
    }),
    201,
    'createWebhook',
  );
  expectStatus(await admin.client.get('/v1/webhooks'), 200, 'listWebhooks');

  const priced = {
    model: 'mock:priced',
    messages: [{ role: 'user', content: 'hello' }],
    max_tokens: pricedOutputTokens,
  };
  expectStatus(await member.client.post('/v1/chat/completions', priced), 200, 'priced call');
  expectStatus(await member.client.get('/v1/me/limits'), 200, 'getMyLimits');
  // The budget cannot hold a second call: 429 insufficient_quota, as OpenAI answers.
  expectStatus(await member.client.post('/v1/chat/completions', priced), 429, 'over budget');
  let deliveries: unknown[] = [];
  for (let attempt = 0; attempt < 100 && deliveries.length === 0; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const listed = await admin.client.get<{ data: unknown[] }>(
      `/v1/webhooks/${webhook.id}/deliveries`,
    );
    deliveries = expectStatus(listed, 200, 'listWebhookDeliveries').data;
  }
  expect(deliveries.length).toBeGreaterThan(0);
  const alerts = expectStatus(
    await admin.client.get<{ data: unknown[] }>('/v1/budget-alerts'),
    200,
    'listBudgetAlerts',
  );
  expect(alerts.data.length).toBeGreaterThan(0);
  expectStatus(await admin.client.get('/v1/usage?groupBy=day,route,model,user'), 200, 'getUsage');
  const csv = await admin.client.get<string>('/v1/usage/export?groupBy=model');
  expect(expectStatus(csv, 200, 'exportUsage')).toContain('requests');
  expectStatus(await admin.client.delete(`/v1/webhooks/${webhook.id}`), 204, 'deleteWebhook');
  expectStatus(await admin.client.delete(`/v1/policies/${policy.id}`), 204, 'deletePolicy');
}
