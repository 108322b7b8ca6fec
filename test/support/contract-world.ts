import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createMockModelServer, type MockModelServer } from '../../src/testing/index.ts';
import { createIdentityProviderKey, type IdentityProviderKey } from './attack-tools.ts';
import {
  type ContractClient,
  type ContractRecorder,
  createContractRecorder,
} from './contract-client.ts';
import { startMcpAuthServer } from './mcp-auth-server.ts';
import { memoryScriptCore } from './memory-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './test-brigade.ts';
import { startWebhookReceiver, type WebhookReceiver } from './webhook-receiver.ts';

/** Output tokens the mock model reports per call, and what a call of `mock:priced` costs. */
export const pricedOutputTokens = 100;
export const pricedCallUsd = 0.0001;

/** A tenant user of the contract world: its id and a checked client with its key. */
export interface WorldMember {
  readonly id: string;
  readonly keyId: string;
  readonly secret: string;
  readonly client: ContractClient;
}

/** Everything the contract test drives: one server, its fakes and one tenant's users. */
export interface ContractWorld {
  readonly server: TestServer;
  readonly mock: MockModelServer;
  readonly receiver: WebhookReceiver;
  readonly mcp: Awaited<ReturnType<typeof startMcpAuthServer>>;
  readonly recorder: ContractRecorder;
  readonly identityKey: IdentityProviderKey;
  readonly operator: ContractClient;
  readonly anonymous: ContractClient;
  readonly tenantId: string;
  readonly slug: string;
  readonly owner: WorldMember;
  readonly admin: WorldMember;
  readonly member: WorldMember;
  readonly viewer: WorldMember;
  stop(): Promise<void>;
}

/** Throws unless `response` has `status`; returns its body. */
export function expectStatus<T>(
  response: { readonly status: number; readonly body: T; readonly text: string },
  status: number,
  what: string,
): T {
  if (response.status !== status)
    throw new Error(
      `${what}: expected ${status}, got ${response.status} ${response.text.slice(0, 300)}`,
    );
  return response.body;
}

async function seedMember(
  world: { readonly operator: ContractClient; readonly recorder: ContractRecorder },
  tenantId: string,
  role: string,
): Promise<WorldMember> {
  const user = expectStatus(
    await world.operator.post<{ id: string }>(`/v1/tenants/${tenantId}/users`, {
      role,
      email: `${role}-${randomBytes(3).toString('hex')}@contract.test`,
      displayName: role,
    }),
    201,
    `seed ${role}`,
  );
  const key = expectStatus(
    await world.operator.post<{ id: string; secret: string }>(
      `/v1/tenants/${tenantId}/users/${user.id}/api-keys`,
      { name: role },
    ),
    201,
    `key of ${role}`,
  );
  return {
    id: user.id,
    keyId: key.id,
    secret: key.secret,
    client: world.recorder.client(key.secret),
  };
}

/**
 * Starts the server (local model, a priced mock provider, an MCP server, a webhook receiver,
 * the memory script core, a vault master key and an audit signing key) and seeds one tenant
 * with an owner, an admin, a member and a viewer, all through checked clients.
 */
export async function startContractWorld(): Promise<ContractWorld> {
  const [mock, receiver, mcp] = await Promise.all([
    createMockModelServer({ apiKey: 'mock-key' }),
    startWebhookReceiver(),
    startMcpAuthServer(),
  ]);
  // `mock:refusing` answers 400 (a provider_error), `mock:slow` never answers.
  mock.setScript((request) => {
    if (request.model === 'refusing')
      return { fault: { status: 400, errorMessage: 'bad request upstream' } };
    if (request.model === 'slow') return { fault: { hang: true } };
    return { text: 'ok', usage: { promptTokens: 5, completionTokens: pricedOutputTokens } };
  });
  const signingKey = generateKeyPairSync('ed25519')
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
  const server = await startTestServer(
    {
      providers: { mock: { type: 'openai-compatible', baseUrl: mock.url, apiKeyEnv: 'MOCK_KEY' } },
      models: {
        prices: {
          'mock:priced': { inputPerMTok: 0, outputPerMTok: 1 },
          'mock:refusing': { inputPerMTok: 0, outputPerMTok: 0 },
          'mock:slow': { inputPerMTok: 0, outputPerMTok: 0 },
        },
      },
      runs: { pollIntervalMs: 50 },
      webhooks: { allowPrivateNetworks: true, retryDelaysMs: [200], pollMs: 100 },
      tools: { tenantHttp: { allowPrivateNetworks: true } },
      audit: { checkpoints: { pollMs: 3_600_000 } },
    },
    {
      env: {
        MOCK_KEY: 'mock-key',
        BRIGADE_MASTER_KEY: randomBytes(32).toString('base64'),
        BRIGADE_AUDIT_SIGNING_KEY: signingKey,
      },
      cores: [memoryScriptCore],
    },
  );
  const recorder = await createContractRecorder(server.url);
  const operator = recorder.client(testOperatorKey);
  const slug = `contract-${randomBytes(3).toString('hex')}`;
  const tenant = expectStatus(
    await operator.post<{ id: string }>('/v1/tenants', { slug, name: 'Contract' }),
    201,
    'seed tenant',
  );
  const context = { operator, recorder };
  const [owner, admin, member, viewer] = await Promise.all(
    ['owner', 'admin', 'member', 'viewer'].map((role) => seedMember(context, tenant.id, role)),
  );
  if (owner === undefined || admin === undefined || member === undefined || viewer === undefined)
    throw new Error('unreachable: four roles were seeded');
  return {
    server,
    mock,
    receiver,
    mcp,
    recorder,
    identityKey: createIdentityProviderKey(),
    operator,
    anonymous: recorder.client(),
    tenantId: tenant.id,
    slug,
    owner,
    admin,
    member,
    viewer,
    async stop() {
      await server.stop();
      await Promise.all([mock.close(), receiver.close(), mcp.close()]);
    },
  };
}

/** Seeds another user of the world's tenant (for operations that change or delete one). */
export function seedExtraMember(world: ContractWorld, role: string): Promise<WorldMember> {
  return seedMember(world, world.tenantId, role);
}

/** Polls a run until its status is one of `statuses` (about 10 s at most). */
export async function waitForStatus(
  client: ContractClient,
  ids: { readonly threadId: string; readonly runId: string },
  statuses: readonly string[],
): Promise<{ status: string }> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const run = await client.get<{ status: string }>(
      `/v1/threads/${ids.threadId}/runs/${ids.runId}`,
    );
    if (statuses.includes(run.body.status)) return run.body;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`run ${ids.runId} never reached ${statuses.join('|')}`);
}
