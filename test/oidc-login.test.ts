import { randomBytes } from 'node:crypto';
import {
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWTPayload,
  SignJWT,
  UnsecuredJWT,
} from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { type JwksServer, startJwksServer } from './support/jwks-server.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/** What goes into one signed test token; every field but `claims` has a working default. */
interface TokenSpec {
  readonly claims: JWTPayload;
  readonly key?: CryptoKey | Uint8Array;
  readonly alg?: string;
  readonly kid?: string;
  readonly issuer?: string;
  readonly audience?: string | string[];
  /** Expiry in seconds since the epoch; omitted means in five minutes, null means none. */
  readonly exp?: number | null;
}

const issuer = 'https://idp.example.test';
const audienceA = 'brigade-a';
const audienceB = 'brigade-b';
const kid = 'idp-key-1';
const nowSeconds = () => Math.floor(Date.now() / 1000);

let server: TestServer;
let operator: ApiClient;
let jwks: JwksServer;
let idpKey: CryptoKey;
let strangerKey: CryptoKey;
let tenantA: string;
let tenantB: string;

function sign(spec: TokenSpec): Promise<string> {
  const jwt = new SignJWT(spec.claims)
    .setProtectedHeader({ alg: spec.alg ?? 'RS256', kid: spec.kid ?? kid, typ: 'JWT' })
    .setIssuer(spec.issuer ?? issuer)
    .setAudience(spec.audience ?? audienceA)
    .setIssuedAt();
  if (spec.exp !== null) jwt.setExpirationTime(spec.exp ?? nowSeconds() + 300);
  return jwt.sign(spec.key ?? idpKey);
}

/** A subject no test has used yet. */
const freshSubject = (label: string) => `${label}-${randomBytes(4).toString('hex')}`;

interface Me {
  kind: string;
  authMethod: string;
  keyId: string | null;
  tenant: { id: string };
  user: { id: string; role: string; email: string | null; externalSubject: string | null };
}

const me = (token: string) => apiClient(server.url, token).get<Me>('/v1/me');

async function usersOf(tenantId: string): Promise<Created[]> {
  const list = await operator.get<{ data: Created[] }>(`/v1/tenants/${tenantId}/users?limit=100`);
  expect(list.status).toBe(200);
  return list.body.data;
}

async function trust(tenantId: string, body: Record<string, unknown>): Promise<Created> {
  const created = await operator.post<Created>(`/v1/tenants/${tenantId}/oidc-providers`, {
    name: 'idp',
    issuer,
    ...body,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body;
}

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  idpKey = pair.privateKey;
  strangerKey = (await generateKeyPair('RS256')).privateKey;
  jwks = await startJwksServer([
    { ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' },
  ]);
  // The test's identity provider serves its keys on 127.0.0.1, a private address.
  server = await startTestServer({ auth: { jwksAllowPrivateNetworks: true } });
  operator = apiClient(server.url, testOperatorKey);
  tenantA = await seedTenant(operator, 'oidc-a');
  tenantB = await seedTenant(operator, 'oidc-b');
  await trust(tenantA, {
    audience: audienceA,
    jwksUrl: jwks.url,
    jitProvisioning: true,
    roleClaim: 'groups',
    roleMapping: { 'brigade-admins': 'admin' },
  });
});

afterAll(async () => {
  await server?.stop();
  await jwks?.close();
});

describe('sign-in with a JWKS provider', () => {
  it('signs in a JIT-provisioned user with the role its groups map to', async () => {
    const sub = freshSubject('alice');
    const token = await sign({
      claims: { sub, email: `${sub}@example.test`, name: 'Alice', groups: ['brigade-admins'] },
    });
    const response = await me(token);
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body).toMatchObject({
      kind: 'user',
      authMethod: 'jwt',
      keyId: null,
      tenant: { id: tenantA },
      user: { role: 'admin', email: `${sub}@example.test`, externalSubject: sub },
    });
    expect(jwks.fetches()).toBeGreaterThan(0);
  });

  it('maps a returning subject to the same user', async () => {
    const sub = freshSubject('bob');
    const first = await me(await sign({ claims: { sub, groups: ['brigade-admins'] } }));
    const again = await me(await sign({ claims: { sub, groups: ['brigade-admins'] } }));
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.body.user.id).toBe(first.body.user.id);
    const users = await usersOf(tenantA);
    expect(users.filter((user) => user['externalSubject'] === sub)).toHaveLength(1);
  });

  it('gives the default role when no group maps to a Brigade role', async () => {
    const token = await sign({ claims: { sub: freshSubject('carol'), groups: ['owners'] } });
    const response = await me(token);
    expect(response.status).toBe(200);
    expect(response.body.user.role).toBe('member');
  });

  it('signs in, never with a 500, whatever role, e-mail or name claims the provider sends', async () => {
    for (const groups of [['constructor'], '__proto__', 'toString', ['hasOwnProperty', 'x']]) {
      const response = await me(await sign({ claims: { sub: freshSubject('proto'), groups } }));
      expect({ groups, status: response.status }).toEqual({ groups, status: 200 });
      expect(response.body.user.role).toBe('member');
    }
    const sub = freshSubject('long');
    const name = `${'é'.repeat(199)}😀😀`;
    const response = await me(
      await sign({ claims: { sub, email: `${'a'.repeat(5_000)}@example.test`, name } }),
    );
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body.user.email).toBeNull();
    const stored = (await usersOf(tenantA)).find((user) => user['externalSubject'] === sub);
    expect(stored?.['displayName']).toBe(`${'é'.repeat(199)}😀`);
  });

  it('rejects forged, misdirected and stale tokens without provisioning anyone', async () => {
    const claims = () => ({ sub: freshSubject('mallory'), groups: ['brigade-admins'] });
    const before = (await usersOf(tenantA)).length;
    const cases: [string, string][] = [
      ['wrong audience', await sign({ claims: claims(), audience: 'someone-else' })],
      ['wrong issuer', await sign({ claims: claims(), issuer: 'https://evil.example.test' })],
      ['expired', await sign({ claims: claims(), exp: nowSeconds() - 3600 })],
      ['no exp', await sign({ claims: claims(), exp: null })],
      ['no subject', await sign({ claims: { groups: ['brigade-admins'] } })],
      ['stranger key, same kid', await sign({ claims: claims(), key: strangerKey })],
      ['stranger key, own kid', await sign({ claims: claims(), key: strangerKey, kid: 'x' })],
      [
        'HS256',
        await sign({ claims: claims(), alg: 'HS256', key: new Uint8Array(randomBytes(32)) }),
      ],
      [
        'alg none',
        new UnsecuredJWT(claims())
          .setIssuer(issuer)
          .setAudience(audienceA)
          .setExpirationTime('5m')
          .encode(),
      ],
      ['tampered payload', await tamper(await sign({ claims: claims() }))],
    ];
    for (const [label, token] of cases) {
      const response = await me(token);
      expect(response.status, label).toBe(401);
      expect(response.body, label).toMatchObject({ code: 'unauthenticated' });
    }
    expect(await usersOf(tenantA)).toHaveLength(before);
  });

  it('refuses a JIT user an administrator has disabled', async () => {
    const token = await sign({ claims: { sub: freshSubject('dave') } });
    const first = await me(token);
    expect(first.status).toBe(200);
    const disabled = await operator.request(
      'PATCH',
      `/v1/tenants/${tenantA}/users/${first.body.user.id}`,
      { status: 'disabled' },
    );
    expect(disabled.status).toBe(200);
    expect((await me(token)).status).toBe(401);
  });

  it('creates exactly one user when one subject signs in ten times at once', async () => {
    for (let round = 0; round < 3; round += 1) {
      const sub = freshSubject('rush');
      const token = await sign({ claims: { sub, email: `${sub}@example.test` } });
      const responses = await Promise.all(Array.from({ length: 10 }, () => me(token)));
      expect(responses.map((response) => response.status)).toEqual(Array(10).fill(200));
      expect(new Set(responses.map((response) => response.body.user.id)).size).toBe(1);
      const users = await usersOf(tenantA);
      expect(users.filter((user) => user['externalSubject'] === sub)).toHaveLength(1);
    }
  });
});

/** Changes one claim of a signed token, keeping the original signature. */
async function tamper(token: string): Promise<string> {
  const [header, payload, signature] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as JWTPayload;
  const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'someone-important' }));
  return `${header}.${forged.toString('base64url')}.${signature}`;
}

describe('providers without JIT provisioning', () => {
  it('does not let an unknown subject in', async () => {
    const tenant = await seedTenant(operator, 'oidc-nojit');
    await trust(tenant, {
      issuer: 'https://nojit.example.test',
      audience: 'brigade-nojit',
      jwksUrl: jwks.url,
    });
    const token = await sign({
      claims: { sub: freshSubject('eve') },
      issuer: 'https://nojit.example.test',
      audience: 'brigade-nojit',
    });
    expect((await me(token)).status).toBe(401);
    expect(await usersOf(tenant)).toHaveLength(0);
  });
});

describe('providers configured with PEM public keys', () => {
  const pemIssuer = 'https://pem.example.test';
  let pemKey: CryptoKey;
  let publicPem: string;
  let tenant: string;

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    pemKey = pair.privateKey;
    publicPem = await exportSPKI(pair.publicKey);
    tenant = await seedTenant(operator, 'oidc-pem');
    await trust(tenant, {
      issuer: pemIssuer,
      audience: 'brigade-pem',
      publicKeysPem: [publicPem],
      algorithms: ['ES256'],
      jitProvisioning: true,
    });
  });

  const pemToken = (spec: Partial<TokenSpec>) =>
    sign({
      claims: { sub: 'pem-user' },
      issuer: pemIssuer,
      audience: 'brigade-pem',
      alg: 'ES256',
      key: pemKey,
      ...spec,
    });

  it('signs in with a token signed by the configured key', async () => {
    const response = await me(await pemToken({}));
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ authMethod: 'jwt', tenant: { id: tenant } });
  });

  it('rejects another key and an HS256 token keyed with the public PEM', async () => {
    const other = (await generateKeyPair('ES256')).privateKey;
    expect((await me(await pemToken({ key: other }))).status).toBe(401);
    const confused = await pemToken({ alg: 'HS256', key: new TextEncoder().encode(publicPem) });
    expect((await me(confused)).status).toBe(401);
  });
});

describe('tenant isolation of JWT sign-in', () => {
  beforeAll(async () => {
    // Tenant B trusts the same identity provider (issuer and keys) for its own audience.
    await trust(tenantB, { audience: audienceB, jwksUrl: jwks.url, jitProvisioning: true });
  });

  it('keeps a user signed in through tenant A inside tenant A', async () => {
    const token = await sign({
      claims: { sub: freshSubject('frank'), groups: ['brigade-admins'] },
    });
    const response = await me(token);
    expect(response.status).toBe(200);
    expect(response.body.tenant.id).toBe(tenantA);
    const client = apiClient(server.url, token);
    expect((await client.get('/v1/tenants')).body).toMatchObject({ data: [{ id: tenantA }] });
    expect((await client.get<{ data: unknown[] }>('/v1/tenants')).body.data).toHaveLength(1);
    for (const path of [
      `/v1/tenants/${tenantB}`,
      `/v1/tenants/${tenantB}/users`,
      `/v1/tenants/${tenantB}/oidc-providers`,
    ]) {
      expect((await client.get(path)).status, path).toBe(404);
    }
    const planted = await client.post(`/v1/tenants/${tenantB}/oidc-providers`, {
      name: 'planted',
      issuer: 'https://planted.example.test',
      audience: 'x',
      jwksUrl: jwks.url,
    });
    expect(planted.status).toBe(404);
    expect((await client.post(`/v1/tenants/${tenantB}/users`, { role: 'owner' })).status).toBe(404);
  });

  it("does not carry tenant A's role mapping or user into tenant B", async () => {
    const sub = freshSubject('grace');
    const inA = await me(await sign({ claims: { sub, groups: ['brigade-admins'] } }));
    const inB = await me(
      await sign({ claims: { sub, groups: ['brigade-admins'] }, audience: audienceB }),
    );
    expect(inA.body).toMatchObject({ tenant: { id: tenantA }, user: { role: 'admin' } });
    expect(inB.body).toMatchObject({ tenant: { id: tenantB }, user: { role: 'member' } });
    expect(inB.body.user.id).not.toBe(inA.body.user.id);
  });

  it('refuses a token that both tenants would accept', async () => {
    const token = await sign({
      claims: { sub: freshSubject('both') },
      audience: [audienceA, audienceB],
    });
    expect((await me(token)).status).toBe(401);
  });
});

describe('suspended tenants', () => {
  const suspendedIssuer = 'https://suspended.example.test';
  let tenant: string;
  let token: string;
  let keySecret: string;

  beforeAll(async () => {
    tenant = await seedTenant(operator, 'oidc-suspended');
    await trust(tenant, {
      issuer: suspendedIssuer,
      audience: 'brigade-s',
      jwksUrl: jwks.url,
      jitProvisioning: true,
    });
    token = await sign({
      claims: { sub: freshSubject('ivan') },
      issuer: suspendedIssuer,
      audience: 'brigade-s',
    });
    keySecret = (await seedUser(operator, { tenantId: tenant, role: 'member' })).secret;
    expect((await me(token)).status).toBe(200);
    expect((await me(keySecret)).status).toBe(200);
    // There is no API to suspend a tenant yet; the owner connection sets the status directly.
    const owner = new pg.Client({ connectionString: server.database.url });
    await owner.connect();
    try {
      await owner.query(`update brigade.tenants set status = 'suspended' where id = $1`, [tenant]);
    } finally {
      await owner.end();
    }
  });

  it('refuses API keys of a suspended tenant', async () => {
    expect((await me(keySecret)).status).toBe(401);
  });

  /**
   * Known finding, reported with a proposed fix: API keys of a suspended tenant are refused
   * (authenticator.ts checks `tenantStatus`), but the JWT path never looks at the tenant's
   * status, so its users keep signing in and new subjects are still JIT-provisioned.
   * `it.fails` keeps the suite green until it is fixed; turn it into `it` then.
   */
  it('refuses JWT sign-in to a suspended tenant', async () => {
    expect((await me(token)).status).toBe(401);
  });
});
