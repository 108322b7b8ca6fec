import { randomUUID } from 'node:crypto';
import type { ContractClient, ContractResponse } from './contract-client.ts';
import { type ContractWorld, expectStatus, seedExtraMember } from './contract-world.ts';

/**
 * Refusals the contract test provokes on purpose: roles without a permission (403), conflicts
 * (409), limits (429) and bodies refused before any route (400, 413, 415). Each function
 * returns the requests that did not get the expected status, as `what: expected → actual`.
 */

type Attempt = readonly [what: string, expected: number, send: () => Promise<ContractResponse>];

/** Sends the attempts one after another (some depend on the ones before). */
async function outcomes(attempts: readonly Attempt[]): Promise<string[]> {
  const wrong: string[] = [];
  for (const [what, expected, send] of attempts) {
    const response = await send();
    if (response.status !== expected)
      wrong.push(`${what}: ${expected} → ${response.status} ${response.text.slice(0, 160)}`);
  }
  return wrong;
}

const chat = (model = 'local') => ({ model, messages: [{ role: 'user', content: 'hi' }] });

/** Roles refused an action they lack: every answer 403. */
export function provokeForbidden(world: ContractWorld): Promise<string[]> {
  const { viewer, member, admin, owner, tenantId } = world;
  const v = viewer.client;
  const attempts: [string, () => Promise<ContractResponse>][] = [
    ['viewer createAgent', () => v.post('/v1/agents', { name: 'nope' })],
    ['viewer createThread', () => v.post('/v1/threads', {})],
    [
      'viewer createTool',
      () =>
        v.post('/v1/tools', {
          name: 'x',
          description: 'x',
          risk: 'read',
          urlTemplate: 'https://api.example.com/x',
          inputSchema: { type: 'object' },
        }),
    ],
    [
      'viewer createPolicy',
      () => v.post('/v1/policies', { level: 'tenant', limits: { runsPerDay: 0 } }),
    ],
    [
      'viewer createModelRoute',
      () => v.post('/v1/model-routes', { name: 'nope', deployments: [{ model: 'local' }] }),
    ],
    [
      'viewer createWebhook',
      () =>
        v.post('/v1/webhooks', { url: 'https://hooks.example/x', events: ['budget.threshold'] }),
    ],
    [
      'viewer createMcpServer',
      () => v.post('/v1/mcp-servers', { name: 'nope', url: 'https://mcp.example/mcp' }),
    ],
    ['viewer disableTool', () => v.post('/v1/tool-blocks', { toolName: 'calculator' })],
    [
      'viewer putSharedCredential',
      () => v.post('/v1/credentials', { name: 'nope', secret: 'nope-secret-000000' }),
    ],
    [
      'viewer importOpenApiTools',
      () => v.post('/v1/tools/import-openapi', { document: { openapi: '3.1.0', paths: {} } }),
    ],
    ['viewer listUsers', () => v.get(`/v1/tenants/${tenantId}/users`)],
    ['viewer createChatCompletion', () => v.post('/v1/chat/completions', chat())],
    [
      'member createTenant',
      () => member.client.post('/v1/tenants', { slug: 'nope-nope', name: 'Nope' }),
    ],
    ['member listAuditEvents', () => member.client.get(`/v1/tenants/${tenantId}/audit-events`)],
    ['member verifyAudit', () => member.client.post(`/v1/tenants/${tenantId}/audit/verify`)],
    [
      'member createAuditCheckpoint',
      () => member.client.post(`/v1/tenants/${tenantId}/audit/checkpoints`),
    ],
    [
      'member listUserConsents',
      () => member.client.get(`/v1/tenants/${tenantId}/users/${owner.id}/consents`),
    ],
    ['member createUser', () => member.client.post(`/v1/tenants/${tenantId}/users`, {})],
    ['member listBudgetAlerts', () => member.client.get('/v1/budget-alerts')],
    [
      'admin createOidcProvider',
      () =>
        admin.client.post(`/v1/tenants/${tenantId}/oidc-providers`, {
          name: 'idp',
          issuer: 'https://x.idp.test',
          audience: 'x',
          jwksUrl: 'https://x.idp.test/jwks',
        }),
    ],
    [
      'admin updateTenant status',
      () => admin.client.patch(`/v1/tenants/${tenantId}`, { status: 'suspended' }),
    ],
  ];
  return outcomes(attempts.map(([what, send]) => [what, 403, send] as const));
}

/** Conflicts: duplicates, ended runs, decided approvals, the last owner. Every answer 409. */
export async function provokeConflicts(world: ContractWorld): Promise<string[]> {
  const { operator, admin, owner, tenantId, slug } = world;
  const a = admin.client;
  const users = `/v1/tenants/${tenantId}/users`;
  const twice = async (send: () => Promise<ContractResponse>, what: string) => {
    expectStatus(await send(), 201, what);
    return send();
  };
  const tool = {
    name: 'twin',
    description: 'x',
    risk: 'read',
    urlTemplate: 'https://api.example.com/x',
    inputSchema: { type: 'object' },
  };
  const provider = {
    name: 'idp',
    issuer: `https://${slug}-twin.idp.test`,
    audience: 'twin',
    jwksUrl: `https://${slug}-twin.idp.test/jwks`,
  };
  const extra = await seedExtraMember(world, 'member');
  const keys = `${users}/${extra.id}/api-keys`;
  const revoked = expectStatus(await a.post<{ id: string }>(keys, { name: 'gone' }), 201, 'key');
  expectStatus(await a.delete(`${keys}/${revoked.id}`), 200, 'revoke');
  const attempts: [string, () => Promise<ContractResponse>][] = [
    ['createTenant (slug taken)', () => operator.post('/v1/tenants', { slug, name: 'Twin' })],
    [
      'createUser (email taken)',
      () => twice(() => a.post(users, { email: `twin@${slug}.test` }), 'user'),
    ],
    [
      'createAgent (name taken)',
      () => twice(() => a.post('/v1/agents', { name: 'twin' }), 'agent'),
    ],
    ['createTool (name taken)', () => twice(() => a.post('/v1/tools', tool), 'tool')],
    [
      'disableTool (already)',
      () => twice(() => a.post('/v1/tool-blocks', { toolName: 'twin' }), 'block'),
    ],
    [
      'createMcpServer (name taken)',
      () => twice(() => a.post('/v1/mcp-servers', { name: 'twin', url: world.mcp.url }), 'mcp'),
    ],
    [
      'createModelRoute (name taken)',
      () =>
        twice(
          () => a.post('/v1/model-routes', { name: 'twin', deployments: [{ model: 'local' }] }),
          'route',
        ),
    ],
    [
      'createPolicy (target taken)',
      () =>
        twice(
          () =>
            a.post('/v1/policies', { level: 'role', role: 'viewer', limits: { runsPerDay: 50 } }),
          'policy',
        ),
    ],
    [
      'createOidcProvider (issuer taken)',
      () =>
        twice(() => owner.client.post(`/v1/tenants/${tenantId}/oidc-providers`, provider), 'oidc'),
    ],
    [
      'updateAgent (name taken)',
      async () => {
        const other = expectStatus(
          await a.post<{ id: string }>('/v1/agents', { name: 'twin-2' }),
          201,
          'agent 2',
        );
        return a.patch(`/v1/agents/${other.id}`, { name: 'twin' });
      },
    ],
    [
      'updateTool (name taken)',
      async () => {
        const other = expectStatus(
          await a.post<{ id: string }>('/v1/tools', { ...tool, name: 'twin_2' }),
          201,
          'tool 2',
        );
        return a.patch(`/v1/tools/${other.id}`, { name: 'twin' });
      },
    ],
    [
      'deleteModelRoute (a fallback of another route)',
      async () => {
        const target = expectStatus(
          await a.post<{ id: string }>('/v1/model-routes', {
            name: 'spare-twin',
            deployments: [{ model: 'local' }],
          }),
          201,
          'fallback route',
        );
        expectStatus(
          await a.post('/v1/model-routes', {
            name: 'leaning',
            deployments: [{ model: 'local' }],
            fallbacks: [{ route: 'spare-twin', on: ['timeout'] }],
          }),
          201,
          'route falling back',
        );
        return a.delete(`/v1/model-routes/${target.id}`);
      },
    ],
    ['rotateApiKey (revoked)', () => a.post(`${keys}/${revoked.id}/rotate`, {})],
    [
      'createApiKey (user disabled)',
      async () => {
        expectStatus(await a.patch(`${users}/${extra.id}`, { status: 'disabled' }), 200, 'disable');
        return a.post(keys, { name: 'late' });
      },
    ],
    [
      'updateUser (last owner demoted)',
      () => owner.client.patch(`${users}/${owner.id}`, { role: 'admin' }),
    ],
    ['deleteUser (last owner)', () => owner.client.delete(`${users}/${owner.id}`)],
  ];
  return outcomes(attempts.map(([what, send]) => [what, 409, send] as const));
}

/** Limits: a request rate, a daily run quota and a full queue. Every answer 429. */
export async function provokeLimits(world: ContractWorld, agentId: string): Promise<string[]> {
  const { admin } = world;
  const limited = await seedExtraMember(world, 'member');
  const policy = (limits: Record<string, number>) =>
    admin.client.post('/v1/policies', { level: 'user', subjectId: limited.id, limits });
  expectStatus(await policy({ runsPerDay: 0 }), 201, 'run quota');
  const thread = expectStatus(
    await limited.client.post<{ id: string }>('/v1/threads', {}),
    201,
    'thread',
  );
  const wrong = await outcomes([
    [
      'createRun (runsPerDay 0)',
      429,
      () => limited.client.post(`/v1/threads/${thread.id}/runs`, { agentId, input: 'hi' }),
    ],
  ]);
  const rated = await seedExtraMember(world, 'member');
  expectStatus(
    await admin.client.post('/v1/policies', {
      level: 'user',
      subjectId: rated.id,
      limits: { requestsPerMinute: 1 },
    }),
    201,
    'rate policy',
  );
  expectStatus(await rated.client.get('/v1/me'), 200, 'the one request of the minute');
  return [
    ...wrong,
    ...(await outcomes([
      ['getMe (rate limited)', 429, () => rated.client.get('/v1/me')],
      ['listThreads (rate limited)', 429, () => rated.client.get('/v1/threads')],
      ['createThread (rate limited)', 429, () => rated.client.post('/v1/threads', {})],
      [
        'createChatCompletion (rate limited)',
        429,
        () => rated.client.post('/v1/chat/completions', chat()),
      ],
      ['listModels (rate limited)', 429, () => rated.client.get('/v1/models')],
    ])),
  ];
}

/** Requests valid in shape that a service refuses: every answer 422 (a problem's extra members). */
export function provokeInvalid(world: ContractWorld): Promise<string[]> {
  const a = world.admin.client;
  const petstore = {
    openapi: '3.1.0',
    servers: [{ url: 'https://api.example.com/v1' }],
    paths: {
      '/pets': { get: { operationId: 'listPets', responses: { 200: { description: 'OK' } } } },
    },
  };
  return outcomes([
    [
      'createAgent (unknown tool)',
      422,
      () => a.post('/v1/agents', { name: 'lost', tools: ['no_such_tool'] }),
    ],
    [
      'createAgent (unknown core)',
      422,
      () => a.post('/v1/agents', { name: 'lost', coreId: 'no-such-core' }),
    ],
    [
      'createMcpServer (undeclared stdio command)',
      422,
      () => a.post('/v1/mcp-servers', { name: 'lost', transport: 'stdio', command: 'nothing' }),
    ],
    [
      'createMcpServer (unreachable)',
      422,
      () => a.post('/v1/mcp-servers', { name: 'lost', url: 'http://127.0.0.1:1/mcp' }),
    ],
    [
      'importOpenApiTools (names taken)',
      422,
      async () => {
        const body = { document: petstore, namePrefix: 'twice_' };
        expectStatus(await a.post('/v1/tools/import-openapi', body), 201, 'first import');
        return a.post('/v1/tools/import-openapi', body);
      },
    ],
    [
      'createRun (no such agent)',
      404,
      async () => {
        const thread = expectStatus(
          await world.member.client.post<{ id: string }>('/v1/threads', {}),
          201,
          'thread',
        );
        return world.member.client.post(`/v1/threads/${thread.id}/runs`, {
          agentId: randomUUID(),
          input: 'hi',
        });
      },
    ],
    [
      'listMessages (bad cursor)',
      422,
      () => world.member.client.get(`/v1/threads/${randomUUID()}/messages?after=x`),
    ],
    [
      'decideApproval (edit without arguments)',
      422,
      () =>
        world.member.client.post(`/v1/approvals/${randomUUID()}/decision`, { decision: 'edit' }),
    ],
  ]);
}

/** Bodies refused before any route: malformed JSON 400, too large 413, not JSON 415. */
export function provokeBadBodies(
  client: ContractClient,
  bodyLimitBytes: number,
): Promise<string[]> {
  const large = JSON.stringify({ title: 'x'.repeat(bodyLimitBytes) });
  const attempts: Attempt[] = [];
  for (const path of ['/v1/threads', '/v1/chat/completions', `/v1/threads/${randomUUID()}/runs`]) {
    attempts.push(
      [`${path} malformed`, 400, () => client.request('POST', path, { raw: '{"title":' })],
      [`${path} too large`, 413, () => client.request('POST', path, { raw: large })],
      [
        `${path} as text/plain`,
        415,
        () =>
          client.request('POST', path, { raw: '{}', headers: { 'content-type': 'text/plain' } }),
      ],
    );
  }
  return outcomes(attempts);
}
