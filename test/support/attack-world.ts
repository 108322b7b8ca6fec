import type { KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { type ApiClient, apiClient, type Created, seedTenant } from './api-client.ts';
import { storeMcpServer, storeMemory } from './attack-rows.ts';
import type { IdentityProviderKey } from './attack-tools.ts';

/** Tenant roles, most powerful first (the test's own copy, so it does not trust `src/`). */
export const roles = ['owner', 'admin', 'member', 'viewer'] as const;

/** A tenant role. */
export type Role = (typeof roles)[number];

/** True for the roles that manage users, keys and OIDC providers. */
export const isPrivileged = (role: Role): boolean => role === 'owner' || role === 'admin';

/** True for the roles that may own threads and start runs. */
export const writesThreads = (role: Role): boolean => role !== 'viewer';

/** The generated shape of one user: role, how many keys, which key it attacks with. */
export interface UserSpec {
  readonly role: Role;
  readonly keyCount: number;
  readonly credentialIndex: number;
}

/** The generated shape of one tenant. */
export interface TenantSpec {
  readonly users: readonly UserSpec[];
  readonly oidc: 'none' | 'pem' | 'jwks';
}

const userSpecArbitrary = fc.record({
  role: fc.constantFrom(...roles),
  keyCount: fc.integer({ min: 1, max: 2 }),
  credentialIndex: fc.nat({ max: 1 }),
});

/** 1–4 users of random roles, at least one of them an owner. */
const tenantSpecArbitrary: fc.Arbitrary<TenantSpec> = fc.record({
  users: fc
    .tuple(fc.array(userSpecArbitrary, { minLength: 1, maxLength: 4 }), fc.nat())
    .map(([users, pick]) =>
      users.some((user) => user.role === 'owner')
        ? users
        : users.map((user, index) =>
            index === pick % users.length ? { ...user, role: 'owner' as const } : user,
          ),
    ),
  oidc: fc.constantFrom('none', 'pem', 'jwks'),
});

/** A world of 2–3 tenants. */
export const worldSpecArbitrary = fc.array(tenantSpecArbitrary, { minLength: 2, maxLength: 3 });

/** An API key of the world with its secret. */
export interface WorldKey {
  readonly id: string;
  readonly secret: string;
}

/** A user's private thread with a run parked on a pending approval. */
export interface ParkedRun {
  readonly threadId: string;
  readonly runId: string;
  readonly approvalId: string;
}

/** A user of the world and everything it owns. */
export interface WorldUser {
  readonly tenantId: string;
  readonly id: string;
  readonly role: Role;
  readonly displayName: string;
  readonly keys: readonly WorldKey[];
  /** The secret this user attacks with. */
  readonly credential: string;
  readonly parked: ParkedRun | undefined;
  /** A consent the user granted itself (every user has one). */
  readonly consentId: string;
  /** A credential in the vault (every user but viewers has one). */
  readonly credentialId: string | undefined;
  /** A long-term memory entry (when the world was built with the owner's database URL). */
  readonly memoryId: string | undefined;
}

/** A tenant's OIDC provider; `signingKey` is its identity provider's private key (PEM kind). */
export interface WorldProvider {
  readonly id: string;
  readonly issuer: string;
  readonly audience: string;
  readonly signingKey: KeyObject | undefined;
}

/** A tenant of the world. */
export interface WorldTenant {
  readonly id: string;
  readonly slug: string;
  readonly agentId: string;
  /** A policy the owner set on the tenant. */
  readonly policyId: string;
  /** A model route the owner created. */
  readonly routeId: string;
  /** An HTTP tool, a kill switch and a shared credential the owner created. */
  readonly toolId: string;
  readonly blockId: string;
  readonly sharedCredentialId: string;
  /** A webhook the owner subscribed. */
  readonly webhookId: string;
  /** An MCP server of the tenant (stored directly: registration needs a reachable server). */
  readonly mcpServerId: string | undefined;
  readonly users: readonly WorldUser[];
  readonly provider: WorldProvider | undefined;
}

/** Everything one property run built through the API. */
export interface World {
  readonly tag: string;
  readonly tenants: readonly WorldTenant[];
  readonly users: readonly WorldUser[];
}

/** Throws unless `response` has `status`: world building must not silently half-succeed. */
export function must<T>(response: { status: number; body: T }, status: number, what: string): T {
  if (response.status !== status) {
    throw new Error(
      `${what}: expected ${status}, got ${response.status} ${JSON.stringify(response.body)}`,
    );
  }
  return response.body;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts a run that calls an approval-gated tool and waits until it is parked on the approval. */
async function parkRun(client: ApiClient, agentId: string): Promise<ParkedRun> {
  const thread = must(
    await client.post<Created>('/v1/threads', { title: 'private' }),
    201,
    'thread',
  );
  const run = must(
    await client.post<Created>(`/v1/threads/${thread.id}/runs`, {
      agentId,
      input: 'call calculator {"expression":"6*7"}',
    }),
    201,
    'run',
  );
  for (let attempt = 0; attempt < 400; attempt += 1) {
    const pending = await client.get<{ data: { id: string; runId: string }[] }>('/v1/approvals');
    const approval = pending.body.data.find((item) => item.runId === run.id);
    if (approval !== undefined)
      return { threadId: thread.id, runId: run.id, approvalId: approval.id };
    await sleep(25);
  }
  throw new Error(`run ${run.id} never asked for approval`);
}

interface BuildContext {
  readonly url: string;
  readonly operator: ApiClient;
  readonly identityKey: IdentityProviderKey;
  /** The database as its owner, for objects the API cannot create offline (MCP servers). */
  readonly ownerDatabaseUrl?: string;
}

async function buildUser(
  context: BuildContext,
  options: { tenantId: string; spec: UserSpec; displayName: string },
) {
  const { operator } = context;
  const { tenantId, spec, displayName } = options;
  const user = must(
    await operator.post<Created>(`/v1/tenants/${tenantId}/users`, { role: spec.role, displayName }),
    201,
    'user',
  );
  const keys: WorldKey[] = [];
  for (let index = 0; index < spec.keyCount; index += 1) {
    const key = must(
      await operator.post<Created>(`/v1/tenants/${tenantId}/users/${user.id}/api-keys`, {
        name: `key-${index}`,
      }),
      201,
      'key',
    );
    keys.push({ id: key.id, secret: key.secret ?? '' });
  }
  const credential = keys[spec.credentialIndex % keys.length]?.secret ?? '';
  const consent = must(
    await apiClient(context.url, credential).post<Created>('/v1/me/consents', {
      purpose: 'long_term_memory',
      version: '1',
    }),
    201,
    'consent',
  );
  const vaulted =
    spec.role === 'viewer'
      ? undefined
      : must(
          await apiClient(context.url, credential).post<Created>('/v1/me/credentials', {
            name: 'service',
            secret: `secret-of-${displayName}-000000`,
          }),
          201,
          'credential',
        );
  const memoryId =
    context.ownerDatabaseUrl === undefined
      ? undefined
      : await storeMemory(context.ownerDatabaseUrl, { tenantId, userId: user.id });
  return {
    tenantId,
    id: user.id,
    role: spec.role,
    displayName,
    keys,
    credential,
    consentId: consent.id,
    credentialId: vaulted?.id,
    memoryId,
  };
}

async function buildProvider(
  context: BuildContext,
  options: { tenantId: string; slug: string; kind: TenantSpec['oidc'] },
): Promise<WorldProvider | undefined> {
  const { tenantId, slug, kind } = options;
  if (kind === 'none') return undefined;
  const issuer = `https://${slug}.idp.test`;
  const audience = `brigade-${slug}`;
  const keys =
    kind === 'pem'
      ? { publicKeysPem: [context.identityKey.publicKeyPem] }
      : { jwksUrl: `https://keys.${slug}.idp.test/jwks` };
  const provider = must(
    await context.operator.post<Created>(`/v1/tenants/${tenantId}/oidc-providers`, {
      name: 'idp',
      issuer,
      audience,
      jitProvisioning: true,
      ...keys,
    }),
    201,
    'oidc provider',
  );
  const signingKey = kind === 'pem' ? context.identityKey.privateKey : undefined;
  return { id: provider.id, issuer, audience, signingKey };
}

/** Builds one tenant as the operator; its owner creates an approval-gated agent. */
export async function buildTenant(
  context: BuildContext,
  options: { spec: TenantSpec; slug: string },
): Promise<WorldTenant> {
  const { spec, slug } = options;
  const tenantId = await seedTenant(context.operator, slug);
  const users = await Promise.all(
    spec.users.map((userSpec, index) =>
      buildUser(context, { tenantId, spec: userSpec, displayName: `${slug}-u${index}` }),
    ),
  );
  const owner = users.find((user) => user.role === 'owner');
  if (owner === undefined) throw new Error('the generator promised an owner');
  const agent = must(
    await apiClient(context.url, owner.credential).post<Created>('/v1/agents', {
      name: 'careful',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    }),
    201,
    'agent',
  );
  const policy = must(
    await apiClient(context.url, owner.credential).post<Created>('/v1/policies', {
      level: 'tenant',
      limits: { requestsPerMinute: 100_000 },
    }),
    201,
    'policy',
  );
  const route = must(
    await apiClient(context.url, owner.credential).post<Created>('/v1/model-routes', {
      name: 'house',
      deployments: [{ model: 'local' }],
    }),
    201,
    'model route',
  );
  const webhook = must(
    await apiClient(context.url, owner.credential).post<Created>('/v1/webhooks', {
      url: `https://hooks.${slug}.example/brigade`,
      events: ['budget.threshold'],
    }),
    201,
    'webhook',
  );
  const ownerClient = apiClient(context.url, owner.credential);
  const tool = must(
    await ownerClient.post<Created>('/v1/tools', {
      name: 'lookup',
      description: 'Looks an item up.',
      risk: 'read',
      urlTemplate: `https://api.${slug}.example/items/{id}`,
      inputSchema: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
      auth: { credential: 'service', scheme: 'bearer' },
    }),
    201,
    'tool',
  );
  const block = must(
    await ownerClient.post<Created>('/v1/tool-blocks', { toolName: 'lookup', agentId: agent.id }),
    201,
    'tool block',
  );
  const shared = must(
    await ownerClient.post<Created>('/v1/credentials', {
      name: 'team',
      secret: `shared-secret-of-${slug}-0000`,
    }),
    201,
    'shared credential',
  );
  const provider = await buildProvider(context, { tenantId, slug, kind: spec.oidc });
  const mcpServerId =
    context.ownerDatabaseUrl === undefined
      ? undefined
      : await storeMcpServer(context.ownerDatabaseUrl, tenantId, slug);
  const withRuns = await Promise.all(
    users.map(async (user) => ({
      ...user,
      parked: writesThreads(user.role)
        ? await parkRun(apiClient(context.url, user.credential), agent.id)
        : undefined,
    })),
  );
  return {
    id: tenantId,
    slug,
    agentId: agent.id,
    policyId: policy.id,
    routeId: route.id,
    toolId: tool.id,
    blockId: block.id,
    sharedCredentialId: shared.id,
    webhookId: webhook.id,
    mcpServerId,
    users: withRuns,
    provider,
  };
}

/** Every id of the world that belongs to `user` (what it legitimately knows about itself). */
export function ownIds(user: WorldUser): string[] {
  const parked = user.parked === undefined ? [] : Object.values(user.parked);
  return [
    user.tenantId,
    user.id,
    ...user.keys.map((key) => key.id),
    ...parked,
    user.consentId,
    ...(user.credentialId === undefined ? [] : [user.credentialId]),
    ...(user.memoryId === undefined ? [] : [user.memoryId]),
  ];
}

/** Every id of the world that belongs to `tenant`. */
export function tenantIds(tenant: WorldTenant): string[] {
  return [
    tenant.id,
    tenant.agentId,
    tenant.policyId,
    tenant.routeId,
    tenant.toolId,
    tenant.blockId,
    tenant.sharedCredentialId,
    tenant.webhookId,
    ...(tenant.mcpServerId === undefined ? [] : [tenant.mcpServerId]),
    ...(tenant.provider === undefined ? [] : [tenant.provider.id]),
    ...tenant.users.flatMap(ownIds),
  ];
}
