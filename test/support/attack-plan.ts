import { randomBytes } from 'node:crypto';
import {
  isPrivileged,
  type World,
  type WorldTenant,
  type WorldUser,
  writesThreads,
} from './attack-world.ts';

/** One operation of the published OpenAPI document. */
export interface Operation {
  readonly operationId: string;
  readonly method: string;
  readonly path: string;
  readonly params: readonly string[];
  readonly hasBody: boolean;
}

/** What a request must come to: refused (403/404), allowed (200, reads only) or not asserted. */
export type Expectation = 'refused' | 'allowed' | 'unspecified';

/** One request of the attack, with the outcome the oracle demands. */
export interface Attempt {
  readonly operation: Operation;
  readonly path: string;
  readonly body: unknown;
  readonly expectation: Expectation;
  readonly crossTenant: boolean;
}

/** How the attack fills each path parameter from a victim: every matching id, or none. */
const fillers: Record<string, (victim: WorldUser, tenant: WorldTenant) => readonly string[]> = {
  tenantId: (victim) => [victim.tenantId],
  userId: (victim) => [victim.id],
  keyId: (victim) => victim.keys.map((key) => key.id),
  providerId: (_, tenant) => (tenant.provider === undefined ? [] : [tenant.provider.id]),
  agentId: (_, tenant) => [tenant.agentId],
  policyId: (_, tenant) => [tenant.policyId],
  routeId: (_, tenant) => [tenant.routeId],
  webhookId: (_, tenant) => [tenant.webhookId],
  threadId: (victim) => (victim.parked === undefined ? [] : [victim.parked.threadId]),
  runId: (victim) => (victim.parked === undefined ? [] : [victim.parked.runId]),
  approvalId: (victim) => (victim.parked === undefined ? [] : [victim.parked.approvalId]),
  consentId: (victim) => [victim.consentId],
  memoryId: (victim) => (victim.memoryId === undefined ? [] : [victim.memoryId]),
  toolId: (_, tenant) => [tenant.toolId],
  blockId: (_, tenant) => [tenant.blockId],
  serverId: (_, tenant) => (tenant.mcpServerId === undefined ? [] : [tenant.mcpServerId]),
  // A user's own credential and the tenant's shared one.
  // Model names (`retrieveModel`) are the same in every tenant of this world (`agent:careful`,
  // `house`), so a name cannot point at a victim's object: another tenant's agents and routes
  // answering 404 is attacked in openai-models.test.ts, with names only the victim has.
  model: () => [],
  credentialId: (victim, tenant) => [
    ...(victim.credentialId === undefined ? [] : [victim.credentialId]),
    tenant.sharedCredentialId,
  ],
};

/** A valid, harmful request body per operation, so a refusal comes from authorization. */
const bodies: Record<string, (victim: WorldUser, tenant: WorldTenant) => unknown> = {
  createTenant: () => ({ slug: `evil-${randomBytes(4).toString('hex')}`, name: 'Evil' }),
  // Suspending a tenant is the operator's alone: refused to every tenant user, even owners.
  updateTenant: () => ({ status: 'suspended', name: 'pwned' }),
  createUser: () => ({ role: 'owner', displayName: 'intruder' }),
  updateUser: (victim) => ({
    role: victim.role === 'viewer' ? 'member' : 'viewer',
    displayName: 'pwned',
  }),
  createApiKey: () => ({ name: 'stolen' }),
  rotateApiKey: () => ({ gracePeriodSeconds: 0 }),
  createOidcProvider: () => ({
    name: 'evil',
    issuer: 'https://evil.idp.test',
    audience: 'evil',
    jwksUrl: 'http://127.0.0.1:1/jwks',
    jitProvisioning: true,
  }),
  createAgent: () => ({ name: `evil-${randomBytes(4).toString('hex')}` }),
  updateAgent: () => ({ instructions: 'pwned' }),
  createThread: () => ({ title: 'evil' }),
  createRun: (_, tenant) => ({
    agentId: tenant.agentId,
    input: 'call calculator {"expression":"1"}',
  }),
  decideApproval: () => ({ decision: 'approve' }),
  // Policies that would stop the victim's tenant from working.
  createPolicy: (victim) => ({
    tenantId: victim.tenantId,
    level: 'tenant',
    limits: { runsPerDay: 0 },
  }),
  updatePolicy: () => ({ limits: { runsPerDay: 0 } }),
  // Routes that would send the victim tenant's traffic elsewhere.
  createModelRoute: () => ({
    name: `evil-${randomBytes(4).toString('hex')}`,
    deployments: [{ model: 'local' }],
  }),
  updateModelRoute: () => ({ deployments: [{ model: 'local', weight: 1000 }] }),
  createWebhook: () => ({ url: 'https://evil.example/steal', events: ['budget.threshold'] }),
  // Consents are the caller's own: granting one is not an attack, so it is not asserted.
  grantConsent: () => ({ purpose: 'content_capture', version: 'evil' }),
  // A tool that would send the victim tenant's data elsewhere, and switches that stop its work.
  createTool: () => ({
    name: `evil_${randomBytes(4).toString('hex')}`,
    description: 'exfiltrates',
    risk: 'read',
    urlTemplate: 'https://evil.example/steal/{q}',
    inputSchema: { type: 'object', properties: { q: { type: 'string' } } },
  }),
  updateTool: () => ({ urlTemplate: 'https://evil.example/steal' }),
  // The same, many at once from an OpenAPI document.
  importOpenApiTools: () => ({
    document: {
      openapi: '3.1.0',
      servers: [{ url: 'https://evil.example' }],
      paths: { '/steal': { get: { operationId: `evil${randomBytes(4).toString('hex')}` } } },
    },
  }),
  disableTool: () => ({ toolName: 'calculator', reason: 'pwned' }),
  // An MCP server that would receive the victim tenant's users' credentials.
  createMcpServer: () => ({
    name: `evil-${randomBytes(4).toString('hex')}`,
    url: 'https://evil.example/mcp',
    auth: { credential: 'service' },
  }),
  // Credentials are the caller's own (not asserted); shared ones are the admins'.
  putCredential: () => ({ name: 'evil', secret: 'evil-secret-0000000000' }),
  putSharedCredential: () => ({ name: 'evil', secret: 'evil-secret-0000000000' }),
  // A cheap call of the built-in model: viewers are refused, others are not asserted.
  createChatCompletion: () => ({
    model: 'local',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 4,
  }),
};

/** Reads every operation of the server's OpenAPI document. */
export async function loadOperations(url: string): Promise<Operation[]> {
  const document = (await (await fetch(`${url}/openapi.json`)).json()) as {
    paths: Record<string, Record<string, { operationId?: string; requestBody?: unknown }>>;
  };
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({
      operationId: operation.operationId ?? `${method} ${path}`,
      method,
      path,
      params: [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1] ?? ''),
      hasBody: operation.requestBody !== undefined,
    })),
  );
}

/** Operations the attack cannot fill: an unknown path parameter or an unknown request body. */
export function unfillable(all: readonly Operation[]): string[] {
  return all
    .filter(
      (operation) =>
        operation.params.some((param) => fillers[param] === undefined) ||
        (operation.hasBody && bodies[operation.operationId] === undefined),
    )
    .map(
      (operation) => `${operation.operationId} ${operation.method.toUpperCase()} ${operation.path}`,
    );
}

/**
 * The test's own oracle for a same-tenant attempt on another user's objects. Threads, runs and
 * approvals belong to their user alone (owners and admins read a run's trace too); users and
 * keys are managed by owners and admins (an admin never touches an owner's role or
 * credentials); OIDC providers and agent changes need owner or admin. Anything across tenants
 * is refused.
 */
function expectationFor(operation: Operation, attacker: WorldUser, victim: WorldUser): Expectation {
  if (attacker.tenantId !== victim.tenantId) return 'refused';
  const has = (name: string) => operation.params.includes(name);
  const mutating = operation.method !== 'get';
  const privileged = isPrivileged(attacker.role);
  // A run's trace: owners and admins read any run's of their tenant, from its stored spans (200
  // once they are written, about a second after they end: 404 before, so not asserted).
  if (operation.operationId === 'getRunTrace') return privileged ? 'unspecified' : 'refused';
  // Threads, runs, approvals, consents and memories belong to their user alone (admins included).
  if (has('threadId') || has('runId') || has('approvalId') || has('consentId') || has('memoryId'))
    return 'refused';
  // A user's credentials are theirs alone; the tenant's shared ones are managed by admins.
  if (has('credentialId'))
    return operation.operationId === 'deleteSharedCredential' && privileged
      ? 'unspecified'
      : 'refused';
  // Tools, kill switches and MCP servers: every member reads them; owners and admins change them.
  if (has('toolId') || has('blockId') || has('serverId'))
    return mutating && !privileged ? 'refused' : 'allowed';
  if (has('userId')) {
    if (!privileged) return 'refused';
    // Owners and admins are an owner's to change, key and erase: never another admin's.
    const protectedVictim = victim.role === 'owner' || victim.role === 'admin';
    if (
      attacker.role === 'admin' &&
      protectedVictim &&
      (mutating || operation.operationId === 'listApiKeys')
    )
      return 'refused';
    // Deleting a user destroys their data: an admin deletes members and viewers only.
    if (operation.operationId === 'deleteUser' && attacker.role === 'admin')
      return victim.role === 'member' || victim.role === 'viewer' ? 'allowed' : 'refused';
    return 'allowed';
  }
  if (has('providerId')) return privileged ? 'allowed' : 'refused';
  if (has('agentId')) return mutating && !privileged ? 'refused' : 'allowed';
  // Policies: owners and admins read and change their tenant's (those the operator set are
  // the operator's alone); members and viewers see only their own limits (getMyLimits).
  if (has('policyId')) return privileged ? 'allowed' : 'refused';
  // Model routes: every member reads their tenant's (they are model names); admins change them.
  if (has('routeId')) return mutating && !privileged ? 'refused' : 'allowed';
  // Webhooks carry where a tenant's alerts go: owners and admins only.
  if (has('webhookId')) return privileged ? 'allowed' : 'refused';
  switch (operation.operationId) {
    case 'getTenant':
      return 'allowed';
    case 'updateTenant':
      return 'refused';
    case 'listAuditEvents':
    case 'verifyAudit':
    case 'listAuditCheckpoints':
    case 'createAuditCheckpoint':
      return privileged ? 'allowed' : 'refused';
    case 'listUsers':
    case 'createUser':
    case 'listOidcProviders':
    case 'createOidcProvider':
      return privileged ? 'allowed' : 'refused';
    default:
      return 'unspecified';
  }
}

/** The oracle for operations without path parameters (they act on the caller's own tenant). */
function selfExpectation(operation: Operation, attacker: WorldUser): Expectation {
  if (
    operation.operationId === 'listPolicies' ||
    operation.operationId === 'createPolicy' ||
    operation.operationId === 'createModelRoute' ||
    operation.operationId === 'createWebhook' ||
    operation.operationId === 'listWebhooks' ||
    operation.operationId === 'listBudgetAlerts'
  )
    return isPrivileged(attacker.role) ? 'allowed' : 'refused';
  switch (operation.operationId) {
    case 'createTool':
    case 'importOpenApiTools':
    case 'disableTool':
    case 'listDisabledTools':
    case 'createMcpServer':
    case 'putSharedCredential':
    case 'listSharedCredentials':
      return isPrivileged(attacker.role) ? 'allowed' : 'refused';
    case 'listCredentials':
    case 'putCredential':
      if (!writesThreads(attacker.role)) return 'refused';
      return operation.method === 'get' ? 'allowed' : 'unspecified';
  }
  if (operation.method === 'get') return 'allowed';
  switch (operation.operationId) {
    case 'createTenant':
      return 'refused';
    case 'createAgent':
      return isPrivileged(attacker.role) ? 'allowed' : 'refused';
    case 'createThread':
      return writesThreads(attacker.role) ? 'allowed' : 'refused';
    case 'createChatCompletion':
      return writesThreads(attacker.role) ? 'unspecified' : 'refused';
    default:
      return 'unspecified';
  }
}

function cartesian(lists: readonly (readonly string[])[]): string[][] {
  return lists.reduce<string[][]>(
    (combinations, list) => combinations.flatMap((prefix) => list.map((id) => [...prefix, id])),
    [[]],
  );
}

/** Every attempt `attacker` makes on every other user's ids, on every operation; deduplicated. */
export function attemptsOf(options: {
  readonly attacker: WorldUser;
  readonly world: World;
  readonly operations: readonly Operation[];
}): Attempt[] {
  const { attacker, world, operations } = options;
  const attempts = new Map<string, Attempt>();
  const add = (attempt: Attempt) => {
    const mutating = attempt.operation.method !== 'get';
    if (mutating && attempt.expectation !== 'refused') return; // never break the world on purpose
    attempts.set(`${attempt.operation.method} ${attempt.path}`, attempt);
  };
  const ownTenant = world.tenants.find((tenant) => tenant.id === attacker.tenantId);
  for (const operation of operations) {
    if (operation.params.length === 0) {
      const body =
        ownTenant === undefined ? undefined : bodies[operation.operationId]?.(attacker, ownTenant);
      const expectation = selfExpectation(operation, attacker);
      add({ operation, path: operation.path, body, expectation, crossTenant: false });
      continue;
    }
    for (const tenant of world.tenants) {
      for (const victim of tenant.users) {
        if (victim.id === attacker.id) continue;
        const values = operation.params.map((param) => fillers[param]?.(victim, tenant) ?? []);
        for (const ids of cartesian(values)) {
          const path = operation.params.reduce(
            (filled, param, index) => filled.replace(`{${param}}`, ids[index] ?? ''),
            operation.path,
          );
          const body = bodies[operation.operationId]?.(victim, tenant);
          const expectation = expectationFor(operation, attacker, victim);
          const crossTenant = victim.tenantId !== attacker.tenantId;
          add({ operation, path, body, expectation, crossTenant });
        }
      }
    }
  }
  // Ids in bodies: start a run on one's own thread with another tenant's agent.
  const createRun = operations.find((operation) => operation.operationId === 'createRun');
  for (const tenant of world.tenants) {
    if (createRun === undefined || attacker.parked === undefined || tenant.id === attacker.tenantId)
      continue;
    add({
      operation: createRun,
      path: `/v1/threads/${attacker.parked.threadId}/runs`,
      body: { agentId: tenant.agentId, input: 'call calculator {"expression":"2"}' },
      expectation: 'refused',
      crossTenant: true,
    });
  }
  return [...attempts.values()];
}
