import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planOpenApiImport } from '../src/runtime/tools/openapi-import.ts';
import { fillTemplate } from '../src/runtime/tools/tenant-http-tool.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import {
  badDocument,
  exponentialSchemas,
  jsonBody,
  ok,
  operation,
  petstore,
} from './support/openapi-fixtures.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import {
  type LoggedServer,
  runOnce,
  startLoggedServer,
  startUpstream,
} from './support/tool-fixtures.ts';

const secret = `petstore-token-${'5'.repeat(20)}`;

let server: LoggedServer;
let upstream: Awaited<ReturnType<typeof startUpstream>>;
let tenantId: string;
let admin: ApiClient;
let adminSecret: string;
let alice: ApiClient;
let otherAdmin: ApiClient;

type Tool = {
  id: string | null;
  name: string;
  risk: string;
  method: string;
  urlTemplate: string;
  inputSchema: Record<string, unknown>;
  auth?: unknown;
};
type ImportResult = {
  dryRun: boolean;
  tools: Tool[];
  skipped: { operationId: string; reason: string }[];
};
type Problem = {
  code: string;
  errors: { operationId: string | null; code: string; message: string; path: string }[];
};

async function httpToolNames(client: ApiClient): Promise<string[]> {
  const listed = await client.get<{ data: { kind: string; name: string }[] }>('/v1/tools');
  return listed.body.data.filter((tool) => tool.kind === 'http').map((tool) => tool.name);
}

beforeAll(async () => {
  upstream = await startUpstream();
  const host = new URL(upstream.url).host;
  server = await startLoggedServer({
    tools: { tenantHttp: { allowPrivateNetworks: true, allowedHosts: [host] } },
  });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'openapi-a');
  adminSecret = (await seedUser(operator, { tenantId, role: 'admin' })).secret;
  admin = apiClient(server.url, adminSecret);
  alice = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const other = await seedTenant(operator, 'openapi-b');
  otherAdmin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId: other, role: 'owner' })).secret,
  );
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await upstream?.close();
});

const importing = (client: ApiClient, body: Record<string, unknown>) =>
  client.post<ImportResult & Problem>('/v1/tools/import-openapi', body);

describe('importing an OpenAPI document', () => {
  it('answers a dry run with the tools it would create and writes nothing', async () => {
    const dry = await importing(admin, {
      document: petstore(upstream.url),
      namePrefix: 'shop_',
      auth: { credential: 'petstore' },
      dryRun: true,
    });
    expect(dry.status, JSON.stringify(dry.body)).toBe(200);
    expect(dry.body.dryRun).toBe(true);
    expect(dry.body.tools.map((tool) => [tool.id, tool.name])).toEqual(
      [
        'shop_list_pets',
        'shop_create_pet',
        'shop_show_pet_by_id',
        'shop_update_pet',
        'shop_delete_pet',
      ].map((name) => [null, name]),
    );
    expect(await httpToolNames(admin)).toEqual([]);
  });

  it('creates one tool per operation, skips what HTTP tools cannot do, and audits', async () => {
    const created = await importing(admin, {
      document: petstore(upstream.url),
      namePrefix: 'shop_',
      auth: { credential: 'petstore' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const byName = new Map(created.body.tools.map((tool) => [tool.name, tool]));
    expect([...byName.keys()].sort()).toEqual([
      'shop_create_pet',
      'shop_delete_pet',
      'shop_list_pets',
      'shop_show_pet_by_id',
      'shop_update_pet',
    ]);
    expect(created.body.skipped.map((item) => item.operationId).sort()).toEqual([
      'getSession',
      'uploadPhoto',
    ]);
    expect(created.body.skipped.find((item) => item.operationId === 'uploadPhoto')?.reason).toMatch(
      /multipart/,
    );
    const update = byName.get('shop_update_pet');
    expect(update).toMatchObject({
      method: 'PUT',
      risk: 'write',
      urlTemplate: `${upstream.url}/v1/pets/{petId}?dry-run={dry_run}`,
      auth: { credential: 'petstore', scheme: 'bearer' },
    });
    expect(update?.inputSchema['required']).toEqual(['petId', 'name']);
    // Stored as jsonb: the key order is PostgreSQL's.
    expect(Object.keys(update?.inputSchema['properties'] as object).sort()).toEqual([
      'dry_run',
      'name',
      'petId',
      'tag',
    ]);
    expect(byName.get('shop_list_pets')?.risk).toBe('read');
    expect(byName.get('shop_delete_pet')?.risk).toBe('sensitive');
    expect((await httpToolNames(admin)).sort()).toEqual([...byName.keys()].sort());
    const audit = await admin.get<{ data: { action: string; targetId: string }[] }>(
      `/v1/tenants/${tenantId}/audit-events`,
    );
    const audited = audit.body.data.filter((event) => event.action === 'tool.created');
    expect(audited.map((event) => event.targetId).sort()).toEqual(
      created.body.tools.map((tool) => tool.id).sort(),
    );
  });

  it('lets an agent call an imported tool with the user credential, path, query and body filled', async () => {
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'shopper',
      tools: ['shop_update_pet', 'shop_list_pets'],
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    expect((await alice.post('/v1/me/credentials', { name: 'petstore', secret })).status).toBe(201);
    const before = upstream.requests.length;
    const update = await runOnce(alice, {
      agentId: agent.body.id,
      input: 'call shop_update_pet {"petId":"a b/c?x","dry_run":true,"name":"Rex","tag":"dog"}',
    });
    expect(update.run.status).toBe('completed');
    const list = await runOnce(alice, {
      agentId: agent.body.id,
      input: 'call shop_list_pets {"limit":5}',
    });
    expect(list.run.status).toBe('completed');
    const [put, get] = upstream.requests.slice(before);
    expect(put).toMatchObject({ method: 'PUT', url: '/v1/pets/a%20b%2Fc%3Fx?dry-run=true' });
    expect(put?.headers['authorization']).toBe(`Bearer ${secret}`);
    expect(JSON.parse(put?.body ?? '')).toEqual({ name: 'Rex', tag: 'dog' });
    // The optional `tag` query parameter is absent: left out, not sent as `tag=`.
    expect(get).toMatchObject({ method: 'GET', url: '/v1/pets?limit=5' });
    expect(get?.headers['authorization']).toBe(`Bearer ${secret}`);
  });

  it('refuses a member (403) and keeps the tools from another tenant', async () => {
    expect(
      (await importing(alice, { document: petstore(upstream.url), namePrefix: 'm_' })).status,
    ).toBe(403);
    expect(await httpToolNames(otherAdmin)).toEqual([]);
    const mine = await admin.get<{ data: { id: string | null }[] }>('/v1/tools');
    const id = mine.body.data.find((tool) => tool.id !== null)?.id ?? '';
    expect((await otherAdmin.get(`/v1/tools/${id}`)).status).toBe(404);
  });
});

describe('a document that cannot be imported', () => {
  const documentWith = (paths: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    badDocument({ baseUrl: `${upstream.url}/api`, paths, extra });

  const cases: [string, () => Record<string, unknown>, [string | null, string][]][] = [
    [
      'has no paths',
      () => ({ document: { openapi: '3.0.0', info: {}, servers: [{ url: upstream.url }] } }),
      [[null, 'missing_paths']],
    ],
    [
      'has a relative server and no baseUrl',
      () => ({
        document: {
          ...documentWith({ '/a': { get: operation('a') } }),
          servers: [{ url: '/api' }],
        },
      }),
      [[null, 'base_url_required']],
    ],
    [
      'has an external $ref (and a good operation that is not created either)',
      () => ({
        document: documentWith({
          '/good': { get: operation('good') },
          '/x': {
            post: operation('external', jsonBody({ $ref: 'https://evil.example/schema.json' })),
          },
        }),
      }),
      [['external', 'external_ref']],
    ],
    [
      'has a cyclic $ref',
      () => ({
        document: documentWith(
          {
            '/nodes': {
              post: operation('addNode', jsonBody({ $ref: '#/components/schemas/Node' })),
            },
          },
          {
            components: {
              schemas: {
                Node: {
                  type: 'object',
                  properties: { child: { $ref: '#/components/schemas/Node' } },
                },
              },
            },
          },
        ),
      }),
      [['addNode', 'ref_cycle']],
    ],
    [
      'points at a host not on the allow-list',
      () => ({
        document: documentWith({ '/a': { get: operation('a') } }),
        baseUrl: 'https://api.evil.example',
      }),
      [['a', 'invalid_definition']],
    ],
    [
      'gives two operations one name',
      () => ({
        document: documentWith({
          '/a': { get: operation('listItems') },
          '/b': { get: operation('list_items') },
        }),
      }),
      [
        ['listItems', 'duplicate_name'],
        ['list_items', 'duplicate_name'],
      ],
    ],
    [
      'names a tool the tenant has',
      () => ({
        document: documentWith({ '/a': { get: operation('listPets') } }),
        namePrefix: 'shop_',
      }),
      [['listPets', 'name_conflict']],
    ],
    [
      'names a built-in tool',
      () => ({ document: documentWith({ '/a': { get: operation('calculator') } }) }),
      [['calculator', 'name_conflict']],
    ],
    [
      'has an operation without operationId',
      () => ({ document: documentWith({ '/a': { get: { responses: ok } } }) }),
      [[null, 'missing_operation_id']],
    ],
    [
      'is asked for an unsupported operation by name',
      () => ({ document: petstore(upstream.url), operations: ['uploadPhoto'], namePrefix: 'x_' }),
      [['uploadPhoto', 'unsupported']],
    ],
    [
      'is asked for an operation it does not have',
      () => ({ document: petstore(upstream.url), operations: ['nope'], namePrefix: 'x_' }),
      [[null, 'operation_not_found']],
    ],
  ];

  cases.push([
    'expands its $refs exponentially',
    () => ({
      document: documentWith(
        { '/big': { post: operation('big', jsonBody({ $ref: '#/components/schemas/S0' })) } },
        { components: { schemas: exponentialSchemas(20) } },
      ),
    }),
    [['big', 'ref_too_large']],
  ]);

  it.each(cases)(
    'answers 422 with each failing operation and writes nothing when it %s',
    async (_, body, expected) => {
      const before = await httpToolNames(admin);
      const refused = await importing(admin, body());
      expect(refused.status, JSON.stringify(refused.body)).toBe(422);
      expect(refused.body.code).toBe('validation_failed');
      expect(refused.body.errors.map((error) => [error.operationId, error.code])).toEqual(expected);
      for (const error of refused.body.errors) expect(error.message.length).toBeGreaterThan(0);
      expect(await httpToolNames(admin)).toEqual(before);
    },
  );

  it('answers 422, not 500, for a document nested too deeply to measure', async () => {
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    const document = JSON.stringify(documentWith({ '/a': { get: operation('a') } }));
    const response = await fetch(`${server.url}/v1/tools/import-openapi`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminSecret}`, 'content-type': 'application/json' },
      body: `{"document":${document.slice(0, -1)},"x-deep":${deep}}}`,
    });
    // Refused at the boundary, like any request body nested deeper than 100 levels.
    expect(response.status).toBe(422);
    const problem = (await response.json()) as { code: string; errors: { path: string }[] };
    expect(problem.code).toBe('validation_failed');
    expect(problem.errors.map((error) => error.path)).toEqual(['body']);
  });

  it('names the refused host in the problem', async () => {
    const refused = await importing(admin, {
      document: documentWith({ '/a': { get: operation('a') } }),
      baseUrl: 'https://api.evil.example',
    });
    expect(refused.body.errors[0]?.message).toMatch(/urlTemplate: .*api\.evil\.example/);
  });
});

describe('generated URL templates', () => {
  const values = fc
    .string({ unit: 'grapheme', maxLength: 40 })
    .filter((value) => !/^(\.|%2e){1,2}$/i.test(value.trim()));

  it('always URL-encode path and query values into the template and never change the host', () => {
    fc.assert(
      fc.property(
        values,
        values,
        fc.string({ minLength: 1, maxLength: 20 }),
        (id, q, queryName) => {
          const plan = planOpenApiImport(
            {
              openapi: '3.1.0',
              servers: [{ url: 'https://api.example.com/v1' }],
              paths: {
                '/items/{id}': {
                  get: {
                    operationId: 'getItem',
                    parameters: [
                      { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
                      { name: queryName, in: 'query', schema: { type: 'string' } },
                    ],
                  },
                },
              },
            },
            {},
          );
          const tool = plan.tools[0];
          if (tool === undefined)
            return (
              queryName.replace(/[^A-Za-z0-9_]/g, '_').replace(/^(?=[^A-Za-z_])/, '_') === 'id'
            );
          const argument =
            Object.keys(tool.definition.inputSchema['properties'] as object)[1] ?? '';
          const url = fillTemplate(tool.definition.urlTemplate, { id, [argument]: q });
          expect(url.origin).toBe('https://api.example.com');
          expect(url.pathname.split('/')).toHaveLength(4);
          expect(decodeURIComponent(url.pathname.slice('/v1/items/'.length))).toBe(id);
          expect(url.searchParams.getAll(queryName)).toEqual([q]);
          expect(url.hash).toBe('');
          return true;
        },
      ),
      { numRuns: 500 },
    );
  });
});
