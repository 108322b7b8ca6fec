import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { changesTo, existenceLeaks, violationsOf } from './support/attack-checks.ts';
import {
  type Attempt,
  attemptsOf,
  loadOperations,
  type Operation,
  unfillable,
} from './support/attack-plan.ts';
import {
  createIdentityProviderKey,
  type IdentityProviderKey,
  inPool,
  type Outcome,
  send as sendTo,
  signIdToken,
} from './support/attack-tools.ts';
import {
  buildTenant,
  must,
  type TenantSpec,
  type World,
  type WorldUser,
  worldSpecArbitrary,
} from './support/attack-world.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/*
 * A hostile user's attack on tenant isolation (DESIGN.md invariants 1-3), through HTTP only.
 * fast-check builds random worlds of tenants, users, keys, OIDC providers, agents and private
 * runs parked on approvals; every user then tries every other user's ids on every operation
 * of /openapi.json (new operations are attacked automatically, and the test fails for one it
 * cannot fill). Refusals must be 403/404, indistinguishable from ids that exist nowhere, leak
 * no foreign id or secret, and change nothing.
 */

let server: TestServer;
let operator: ApiClient;
let operations: Operation[];
let identityKeys: IdentityProviderKey[];
let worldCount = 0;

const send = (credential: string, request: Parameters<typeof sendTo>[2]) =>
  sendTo(server.url, credential, request);

async function buildWorld(specs: readonly TenantSpec[]): Promise<World> {
  worldCount += 1;
  const tag = `iso${worldCount}-${randomBytes(3).toString('hex')}`;
  const tenants = await Promise.all(
    specs.map((spec, index) =>
      buildTenant(
        {
          url: server.url,
          operator,
          identityKey: identityKeys[index] ?? createIdentityProviderKey(),
          ownerDatabaseUrl: server.database.url,
        },
        { spec, slug: `${tag}-t${index}` },
      ),
    ),
  );
  return { tag, tenants, users: tenants.flatMap((tenant) => tenant.users) };
}

beforeAll(async () => {
  server = await startTestServer(
    { runs: { pollIntervalMs: 50 } },
    { env: { BRIGADE_MASTER_KEY: randomBytes(32).toString('base64') } },
  );
  operator = apiClient(server.url, testOperatorKey);
  operations = await loadOperations(server.url);
  identityKeys = [0, 1, 2].map(() => createIdentityProviderKey());
});

afterAll(async () => {
  await server?.stop();
});

describe('tenant isolation under attack', () => {
  it('knows how to fill every operation the OpenAPI document publishes', () => {
    expect(operations.length).toBeGreaterThan(20);
    expect(unfillable(operations)).toEqual([]);
  });

  it('lets no user reach another tenant, or another user’s private objects, on any route', async () => {
    expect(unfillable(operations)).toEqual([]);
    let requests = 0;
    await fc.assert(
      fc.asyncProperty(worldSpecArbitrary, async (specs) => {
        const world = await buildWorld(specs);
        const found: string[] = [];
        const refused: { attacker: WorldUser; attempt: Attempt; outcome: Outcome }[] = [];
        const jobs = world.users.flatMap((attacker) =>
          attemptsOf({ attacker, world, operations }).map((attempt) => ({ attacker, attempt })),
        );
        await inPool(jobs, async ({ attacker, attempt }) => {
          const outcome = await send(attacker.credential, {
            method: attempt.operation.method,
            path: attempt.path,
            body: attempt.body,
          });
          found.push(...violationsOf({ attacker, attempt, outcome, world }));
          if (attempt.crossTenant) refused.push({ attacker, attempt, outcome });
        });
        requests += jobs.length;
        found.push(...(await existenceLeaks(server.url, refused)));
        for (const attacker of world.users) {
          const tenants = await send(attacker.credential, { method: 'get', path: '/v1/tenants' });
          const ids = (tenants.json as { data?: { id: string }[] }).data?.map((item) => item.id);
          if (JSON.stringify(ids) !== JSON.stringify([attacker.tenantId]))
            found.push(`listTenants for ${attacker.id} returned ${JSON.stringify(ids)}`);
        }
        found.push(...(await changesTo({ url: server.url, operator }, world)));
        expect(found).toEqual([]);
      }),
      // Each run attacks every operation from every user; three worlds keep CI on a busy
      // two-core machine well inside the timeout.
      { numRuns: 3, endOnFailure: true },
    );
    expect(requests).toBeGreaterThan(0);
  }, 300_000);
});

describe('identity comes only from the credential', () => {
  it('acts only as the key holder, whatever tenant the path, body, query or headers name', async () => {
    const tag = randomBytes(3).toString('hex');
    const home = await seedTenant(operator, `forge-home-${tag}`);
    const away = await seedTenant(operator, `forge-away-${tag}`);
    const member = await seedUser(operator, { tenantId: home, role: 'member' });
    const victim = await seedUser(operator, { tenantId: away, role: 'owner' });
    const victimAgent = must(
      await apiClient(server.url, victim.secret).post<Created>('/v1/agents', { name: 'theirs' }),
      201,
      'agent',
    );
    const forged = {
      'x-tenant-id': away,
      'x-brigade-tenant-id': away,
      'x-user-id': victim.userId,
      'x-brigade-user-id': victim.userId,
      'x-forwarded-user': victim.userId,
      'x-role': 'owner',
      'x-impersonate-user': victim.userId,
    };
    const as = (method: string, path: string, body?: unknown) =>
      send(member.secret, { method, path, body, headers: forged });

    // Query parameters an operation does not declare are refused outright (like body fields).
    const queried = await as('get', `/v1/me?tenantId=${away}&userId=${victim.userId}`);
    expect(queried.status).toBe(422);
    const me = await as('get', '/v1/me');
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({
      kind: 'user',
      tenant: { id: home },
      user: { id: member.userId, role: 'member' },
      keyId: member.keyId,
    });
    expect((await as('get', '/v1/tenants')).json).toMatchObject({ data: [{ id: home }] });
    for (const path of [
      `/v1/tenants/${away}`,
      `/v1/tenants/${away}/users/${victim.userId}`,
      `/v1/tenants/${away}/users/${member.userId}`,
      `/v1/tenants/${home}/users/${victim.userId}`,
      `/v1/agents/${victimAgent.id}`,
    ]) {
      expect((await as('get', path)).status, path).toBe(404);
    }

    const smuggled = await as('post', '/v1/threads', {
      title: 'smuggled',
      tenantId: away,
      userId: victim.userId,
    });
    expect(smuggled.status).toBe(422);
    const thread = await as('post', '/v1/threads', { title: 'mine' });
    expect(thread.status).toBe(201);
    expect(thread.json).toMatchObject({ tenantId: home, userId: member.userId });
    const threadId = (thread.json as Created).id;
    const borrowed = await as('post', `/v1/threads/${threadId}/runs`, {
      agentId: victimAgent.id,
      input: 'hello',
    });
    expect(borrowed.status).toBe(404);

    const keysPath = `/v1/tenants/${home}/users/${member.userId}/api-keys`;
    const keyBody = { name: 'k', tenantId: away, userId: victim.userId };
    expect((await as('post', keysPath, keyBody)).status).toBe(422);
    const key = await as('post', keysPath, { name: 'k' });
    expect(key.status).toBe(201);
    expect(key.json).toMatchObject({ tenantId: home, userId: member.userId });
    const minted = await send((key.json as Created).secret ?? '', {
      method: 'get',
      path: '/v1/me',
    });
    expect(minted.json).toMatchObject({ tenant: { id: home }, user: { id: member.userId } });

    const self = `/v1/tenants/${home}/users/${member.userId}`;
    expect((await as('patch', self, { displayName: 'x', tenantId: away })).status).toBe(422);
    expect((await as('patch', self, { role: 'owner' })).status).toBe(403);
    for (const path of [`${keysPath}/${victim.keyId}`, `${keysPath}/${victim.keyId}/rotate`]) {
      const method = path.endsWith('rotate') ? 'post' : 'delete';
      expect((await as(method, path)).status, path).toBe(404);
    }
    const victimMe = await send(victim.secret, { method: 'get', path: '/v1/me' });
    expect(victimMe.json).toMatchObject({ user: { id: victim.userId, role: 'owner' } });
  });

  it('answers two credentials in one Authorization header with 401', async () => {
    const tenantId = await seedTenant(operator, `forge-two-${randomBytes(3).toString('hex')}`);
    const first = await seedUser(operator, { tenantId, role: 'viewer' });
    const second = await seedUser(operator, { tenantId, role: 'owner' });
    const headers = new Headers();
    headers.append('authorization', `Bearer ${first.secret}`);
    headers.append('authorization', `Bearer ${second.secret}`);
    const response = await fetch(`${server.url}/v1/me`, { headers });
    expect(response.status).toBe(401);
  });

  it('maps a JWT only to its own provider’s tenant, whatever tenant or role claims it carries', async () => {
    const tag = randomBytes(3).toString('hex');
    const [homeKey, awayKey] = identityKeys;
    if (homeKey === undefined || awayKey === undefined) throw new Error('keys missing');
    const home = await seedTenant(operator, `jwt-home-${tag}`);
    const away = await seedTenant(operator, `jwt-away-${tag}`);
    const awayOwner = await seedUser(operator, { tenantId: away, role: 'owner' });
    const providers = [
      { tenantId: home, issuer: `https://home-${tag}.idp.test`, key: homeKey },
      { tenantId: away, issuer: `https://away-${tag}.idp.test`, key: awayKey },
    ];
    for (const { tenantId, issuer, key } of providers) {
      must(
        await operator.post(`/v1/tenants/${tenantId}/oidc-providers`, {
          name: 'idp',
          issuer,
          audience: 'brigade',
          publicKeysPem: [key.publicKeyPem],
          jitProvisioning: true,
          roleClaim: 'groups',
          roleMapping: { staff: 'member' },
        }),
        201,
        'provider',
      );
    }
    const token = await signIdToken({
      issuer: `https://home-${tag}.idp.test`,
      audience: 'brigade',
      key: homeKey.privateKey,
      claims: {
        sub: 'alice',
        groups: ['staff', 'owner', 'admin'],
        tenant_id: away,
        tenantId: away,
        user_id: awayOwner.userId,
        role: 'owner',
      },
    });
    const me = await send(token, { method: 'get', path: '/v1/me' });
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({ tenant: { id: home }, user: { role: 'member' } });
    expect((me.json as { user: Created }).user.id).not.toBe(awayOwner.userId);
    const wrongIssuer = await signIdToken({
      issuer: `https://away-${tag}.idp.test`,
      audience: 'brigade',
      key: homeKey.privateKey,
      claims: { sub: 'alice' },
    });
    expect((await send(wrongIssuer, { method: 'get', path: '/v1/me' })).status).toBe(401);
  });
});

describe('OIDC issuers shared by two tenants', () => {
  /** Trusts `issuer` for `tenantId` with `key`'s public half: JWKS and PEMs are public. */
  function trust(options: {
    credential: string;
    tenantId: string;
    issuer: string;
    key: IdentityProviderKey;
  }) {
    return send(options.credential, {
      method: 'post',
      path: `/v1/tenants/${options.tenantId}/oidc-providers`,
      body: {
        name: 'idp',
        issuer: options.issuer,
        audience: 'brigade',
        publicKeysPem: [options.key.publicKeyPem],
        jitProvisioning: true,
        defaultRole: 'admin',
      },
    });
  }

  /**
   * Two tenants that trust the same issuer, audience and keys are indistinguishable to Brigade,
   * so a token from that issuer signs in to neither by itself: an owner who registers a
   * company's issuer (before or after the company does) captures none of its employees. The
   * client names its tenant with `X-Brigade-Tenant`, so the squatter cannot lock the company's
   * users out either.
   */
  it('never resolves a token of an issuer two tenants trust to either of them', async () => {
    const key = identityKeys[0];
    if (key === undefined) throw new Error('keys missing');
    for (const squatterFirst of [true, false]) {
      const tag = randomBytes(3).toString('hex');
      const issuer = `https://corp-${tag}.idp.test`;
      const squatterTenant = await seedTenant(operator, `squatter-${tag}`);
      const squatter = await seedUser(operator, { tenantId: squatterTenant, role: 'owner' });
      const victimTenant = await seedTenant(operator, `victim-${tag}`);
      const registrations = [
        { credential: squatter.secret, tenantId: squatterTenant, issuer, key },
        { credential: testOperatorKey, tenantId: victimTenant, issuer, key },
      ];
      if (!squatterFirst) registrations.reverse();
      const [first, second] = registrations;
      if (first === undefined || second === undefined) throw new Error('unreachable');
      expect((await trust(first)).status).toBe(201);
      const again = await trust(second);
      if (again.status !== 201) {
        expect([409, 422]).toContain(again.status);
        continue;
      }
      const token = await signIdToken({
        issuer,
        audience: 'brigade',
        key: key.privateKey,
        claims: { sub: `employee-${tag}`, email: `employee-${tag}@corp.test` },
      });
      const me = await send(token, { method: 'get', path: '/v1/me' });
      const landed = me.json as { tenant?: { id?: string }; user?: { role?: string } } | null;
      const where = landed?.tenant?.id === squatterTenant ? 'the squatter' : 'the victim';
      expect(
        me.status,
        `squatter registered ${squatterFirst ? 'first' : 'second'}; the employee landed in ${where}'s tenant as ${landed?.user?.role}`,
      ).toBe(401);
      const named = await send(token, {
        method: 'get',
        path: '/v1/me',
        headers: { 'x-brigade-tenant': victimTenant },
      });
      expect(named.status).toBe(200);
      expect(named.json).toMatchObject({ tenant: { id: victimTenant } });
      const elsewhere = await send(token, {
        method: 'get',
        path: '/v1/me',
        headers: { 'x-brigade-tenant': randomUUID() },
      });
      expect(elsewhere.status).toBe(401);
    }
  });
});
