import { randomUUID } from 'node:crypto';
import { type ApiClient, apiClient, type Created } from './api-client.ts';
import type { Attempt } from './attack-plan.ts';
import { inPool, type Outcome, send, signIdToken } from './attack-tools.ts';
import { ownIds, tenantIds, type World, type WorldTenant, type WorldUser } from './attack-world.ts';

/** Every `tenantId` value anywhere in a JSON document. */
function tenantIdsIn(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(tenantIdsIn);
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, inner]) =>
    key === 'tenantId' && typeof inner === 'string' ? [inner] : tenantIdsIn(inner),
  );
}

/** Violations of the isolation invariants in one attempt's outcome. */
export function violationsOf(options: {
  attacker: WorldUser;
  attempt: Attempt;
  outcome: Outcome;
  world: World;
}): string[] {
  const { attacker, attempt, outcome, world } = options;
  const { status, text, json } = outcome;
  const label = `${attacker.role} ${attacker.id.slice(0, 8)} ${attempt.operation.operationId} ${attempt.operation.method.toUpperCase()} ${attempt.path} → ${status}`;
  const found: string[] = [];
  if (status >= 500) found.push(`${label}: server error`);
  if (attempt.expectation === 'refused' && status !== 403 && status !== 404)
    found.push(`${label}: expected 403 or 404`);
  if (attempt.expectation === 'allowed' && status !== 200) found.push(`${label}: expected 200`);
  const sent = `${attempt.path} ${JSON.stringify(attempt.body ?? null)}`;
  const own = new Set(ownIds(attacker));
  // The tenant's audit log names what its members did, parked runs' approval requests
  // included (`approval.requested`: run, approval, tool, arguments hash — ids, no content), to
  // the owners and admins who may read it; every other operation keeps them hidden.
  const accountable = attempt.operation.operationId === 'listAuditEvents';
  // A run's trace, which owners and admins read, names that run's approval (its tool span).
  const traced = (runId: string) =>
    attempt.operation.operationId === 'getRunTrace' && attempt.path.includes(runId);
  const hidden = world.tenants.flatMap((tenant) =>
    tenant.id === attacker.tenantId && attempt.expectation !== 'refused'
      ? tenant.users.flatMap((user) =>
          user.id === attacker.id ||
          user.parked === undefined ||
          accountable ||
          traced(user.parked.runId)
            ? []
            : Object.values(user.parked),
        )
      : tenantIds(tenant).filter((id) => !own.has(id)),
  );
  for (const id of hidden) {
    if (!sent.includes(id) && text.includes(id)) found.push(`${label}: body reveals ${id}`);
  }
  for (const user of world.users) {
    for (const key of user.keys) {
      if (text.includes(key.secret)) found.push(`${label}: body reveals a key secret`);
    }
  }
  if (status >= 200 && status < 300) {
    for (const tenantId of tenantIdsIn(json)) {
      if (tenantId !== attacker.tenantId) found.push(`${label}: object of tenant ${tenantId}`);
    }
    const data = (json as { data?: unknown } | null)?.data;
    if (Array.isArray(data)) {
      for (const item of data as { tenantId?: string; id?: string }[]) {
        const itemTenant =
          attempt.operation.operationId === 'listTenants' ? item.id : item.tenantId;
        if (itemTenant !== undefined && itemTenant !== attacker.tenantId)
          found.push(`${label}: list item of tenant ${itemTenant}`);
      }
    }
  }
  return found;
}

const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

/** The same attempt with every id the attacker does not own replaced by a UUID nobody owns. */
function phantomOf(attempt: Attempt, attacker: WorldUser): Attempt {
  const own = new Set(ownIds(attacker));
  const fresh = new Map<string, string>();
  const replace = (text: string) =>
    text.replace(uuid, (id) => {
      if (own.has(id)) return id;
      const replacement = fresh.get(id) ?? randomUUID();
      fresh.set(id, replacement);
      return replacement;
    });
  const body =
    attempt.body === undefined ? undefined : JSON.parse(replace(JSON.stringify(attempt.body)));
  return { ...attempt, path: replace(attempt.path), body };
}

/** Groups attempts that must be answered alike: same attacker, operation and path shape. */
function shapeOf(attempt: Attempt, attacker: WorldUser): string {
  const own = new Set(ownIds(attacker));
  const path = attempt.path.replace(uuid, (id) => (own.has(id) ? ':own' : ':other'));
  return `${attacker.id} ${attempt.operation.operationId} ${path}`;
}

const signatureOf = (outcome: Outcome) =>
  `${outcome.status} ${String((outcome.json as { code?: unknown } | null)?.code)}`;

/**
 * Invariant 1: a refused cross-tenant attempt is answered exactly like the same attempt on ids
 * that exist nowhere, so the answer does not reveal whether another tenant's object exists.
 */
export async function existenceLeaks(
  url: string,
  refused: readonly { attacker: WorldUser; attempt: Attempt; outcome: Outcome }[],
): Promise<string[]> {
  const groups = new Map<
    string,
    { attacker: WorldUser; attempt: Attempt; signatures: Set<string> }
  >();
  for (const { attacker, attempt, outcome } of refused) {
    const key = shapeOf(attempt, attacker);
    const group = groups.get(key) ?? { attacker, attempt, signatures: new Set<string>() };
    group.signatures.add(signatureOf(outcome));
    groups.set(key, group);
  }
  const found: string[] = [];
  await inPool([...groups.entries()], async ([key, { attacker, attempt, signatures }]) => {
    const phantom = phantomOf(attempt, attacker);
    const expected = signatureOf(
      await send(url, attacker.credential, {
        method: attempt.operation.method,
        path: phantom.path,
        body: phantom.body,
      }),
    );
    for (const signature of signatures) {
      if (signature !== expected)
        found.push(`${key}: real objects answer ${signature}, nonexistent ones ${expected}`);
    }
  });
  return found;
}

const sorted = (ids: readonly string[]) => [...ids].sort();

/** The `data` array of a list response, or none when the request itself was refused. */
const dataOf = (response: { body: unknown }): Created[] => {
  const data = (response.body as { data?: unknown } | null)?.data;
  return Array.isArray(data) ? (data as Created[]) : [];
};

interface CheckContext {
  readonly url: string;
  readonly operator: ApiClient;
  readonly note: (ok: boolean, message: string) => void;
}

/** The user's keys still authenticate as it; returns one that does, for the checks after. */
async function checkKeys(
  context: CheckContext,
  tenant: WorldTenant,
  user: WorldUser,
): Promise<string | undefined> {
  const { url, operator, note } = context;
  const keyList = dataOf(
    await operator.get(`/v1/tenants/${tenant.id}/users/${user.id}/api-keys?limit=100`),
  );
  note(
    JSON.stringify(sorted(keyList.map((key) => key.id))) ===
      JSON.stringify(sorted(user.keys.map((key) => key.id))) &&
      keyList.every((key) => key['status'] === 'active'),
    `${tenant.slug}: keys of ${user.id} changed: ${JSON.stringify(keyList)}`,
  );
  let working: string | undefined;
  for (const key of user.keys) {
    const me = await send(url, key.secret, { method: 'get', path: '/v1/me' });
    const body = me.json as { user?: { id?: string }; tenant?: { id?: string }; keyId?: string };
    const intact =
      me.status === 200 &&
      body.user?.id === user.id &&
      body.tenant?.id === tenant.id &&
      body.keyId === key.id;
    note(
      intact,
      `${tenant.slug}: key ${key.id} no longer authenticates as its user (${me.status})`,
    );
    if (intact) working ??= key.secret;
  }
  return working;
}

/** The user's private thread, parked run and pending approval are as built. */
async function checkParkedRun(
  context: CheckContext,
  options: { tenant: WorldTenant; user: WorldUser; credential: string },
): Promise<void> {
  const { url, note } = context;
  const { tenant, user, credential } = options;
  if (user.parked === undefined) return;
  const { threadId, runId, approvalId } = user.parked;
  const client = apiClient(url, credential);
  const threadList = dataOf(await client.get('/v1/threads?limit=100'));
  note(
    threadList.length === 1 && threadList[0]?.id === threadId,
    `${tenant.slug}: threads of ${user.id} changed`,
  );
  const run = await client.get<Created>(`/v1/threads/${threadId}/runs/${runId}`);
  note(run.body['status'] === 'requires_action', `${tenant.slug}: run ${runId} was touched`);
  const approvalList = dataOf(await client.get('/v1/approvals'));
  note(
    approvalList.some((item) => item.id === approvalId && item['status'] === 'pending'),
    `${tenant.slug}: approval ${approvalId} was decided`,
  );
}

/** The tenant's users, OIDC provider and agent are as built, and its IdP still signs in to it. */
async function checkTenant(context: CheckContext, tenant: WorldTenant): Promise<void> {
  const { url, operator, note } = context;
  const userList = dataOf(await operator.get(`/v1/tenants/${tenant.id}/users?limit=100`));
  note(
    JSON.stringify(sorted(userList.map((user) => user.id))) ===
      JSON.stringify(sorted(tenant.users.map((user) => user.id))),
    `${tenant.slug}: users added or removed`,
  );
  for (const user of tenant.users) {
    const current = userList.find((item) => item.id === user.id);
    note(
      current?.['role'] === user.role &&
        current['displayName'] === user.displayName &&
        current['status'] === 'active',
      `${tenant.slug}: user ${user.id} changed to ${JSON.stringify(current)}`,
    );
    const credential = await checkKeys(context, tenant, user);
    if (credential !== undefined) {
      await checkParkedRun(context, { tenant, user, credential });
      const consents = dataOf(await apiClient(url, credential).get('/v1/me/consents'));
      note(
        consents.length === 1 &&
          consents[0]?.id === user.consentId &&
          consents[0]['status'] === 'granted',
        `${tenant.slug}: consents of ${user.id} changed: ${JSON.stringify(consents)}`,
      );
      if (user.memoryId !== undefined) {
        const memories = dataOf(await apiClient(url, credential).get('/v1/me/memories'));
        note(
          memories.length === 1 && memories[0]?.id === user.memoryId,
          `${tenant.slug}: memory of ${user.id} changed: ${JSON.stringify(memories)}`,
        );
      }
    }
  }
  const providerList = dataOf(await operator.get(`/v1/tenants/${tenant.id}/oidc-providers`));
  note(
    JSON.stringify(providerList.map((provider) => provider.id)) ===
      JSON.stringify(tenant.provider === undefined ? [] : [tenant.provider.id]),
    `${tenant.slug}: OIDC providers changed`,
  );
  const owner = tenant.users.find((user) => user.role === 'owner');
  const agentList = dataOf(await apiClient(url, owner?.credential).get('/v1/agents?limit=100'));
  note(
    agentList.length === 1 &&
      agentList[0]?.id === tenant.agentId &&
      agentList[0]['instructions'] === '',
    `${tenant.slug}: agents changed: ${JSON.stringify(agentList)}`,
  );
  const provider = tenant.provider;
  if (provider?.signingKey !== undefined) {
    const token = await signIdToken({
      issuer: provider.issuer,
      audience: provider.audience,
      key: provider.signingKey,
      claims: { sub: `check-${tenant.slug}` },
    });
    const me = await send(url, token, { method: 'get', path: '/v1/me' });
    note(
      me.status === 200 && (me.json as { tenant?: { id?: string } }).tenant?.id === tenant.id,
      `${tenant.slug}: its identity provider no longer signs users in to it (${me.status})`,
    );
  }
}

/**
 * Checks, as the operator and the users themselves, that every refused mutation left the world
 * exactly as built: users, roles, keys, OIDC providers, agents, threads, runs, approvals, and
 * no tenant created by a user. Returns what changed.
 */
export async function changesTo(
  context: { readonly url: string; readonly operator: ApiClient },
  world: World,
): Promise<string[]> {
  const found: string[] = [];
  const checks: CheckContext = {
    ...context,
    note: (ok, message) => {
      if (!ok) found.push(message);
    },
  };
  for (const tenant of world.tenants) await checkTenant(checks, tenant);
  let after: string | null = null;
  do {
    const query: string = after === null ? '' : `&after=${encodeURIComponent(after)}`;
    const page = await context.operator.get<{ data: Created[]; nextCursor: string | null }>(
      `/v1/tenants?limit=100${query}`,
    );
    checks.note(
      !dataOf(page).some((tenant) => String(tenant['slug']).startsWith('evil-')),
      'a user created a tenant',
    );
    after = page.body.nextCursor ?? null;
  } while (after !== null);
  return found;
}
