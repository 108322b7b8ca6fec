import { randomBytes } from 'node:crypto';
import { type CryptoKey, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/observability/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * What a validly signed token's claims may hold, and what just-in-time provisioning makes of
 * them: the profile claims are validated as the API validates the same fields (an invalid one
 * is left out, the sign-in goes on), while a subject that cannot identify a user refuses the
 * token with 401.
 */
const issuer = 'https://claims-idp.example.test';
const audience = 'brigade-claims';

let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let key: CryptoKey;
const lines: Record<string, unknown>[] = [];

interface Me {
  user: { id: string; email: string | null; displayName: string | null };
}

function sign(claims: JWTPayload): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(key);
}

const fresh = (label: string) => `${label}-${randomBytes(4).toString('hex')}`;

async function signIn(claims: JWTPayload) {
  return apiClient(server.url, await sign(claims)).get<Me & Record<string, unknown>>('/v1/me');
}

async function subjects(): Promise<unknown[]> {
  const list = await operator.get<{ data: Created[] }>(`/v1/tenants/${tenantId}/users?limit=100`);
  return list.body.data.map((user) => user['externalSubject']);
}

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  key = pair.privateKey;
  const logger = createLogger({
    level: 'warn',
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  server = await startTestServer({}, { logger });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'claims');
  const provider = await operator.post(`/v1/tenants/${tenantId}/oidc-providers`, {
    name: 'idp',
    issuer,
    audience,
    publicKeysPem: [await exportSPKI(pair.publicKey)],
    algorithms: ['ES256'],
    jitProvisioning: true,
  });
  expect(provider.status, JSON.stringify(provider.body)).toBe(201);
});

afterAll(async () => {
  await server?.stop();
});

describe('profile claims of a new user', () => {
  it('leave out an e-mail the API would refuse, and sign the user in', async () => {
    for (const email of ['not-an-email', 'a\u0000@example.test', `${'a'.repeat(400)}@x.test`]) {
      const response = await signIn({ sub: fresh('mail'), email });
      expect(response.status, JSON.stringify(response.body)).toBe(200);
      expect(response.body.user.email, JSON.stringify(email)).toBeNull();
      // The API refuses the same value for the same field.
      const patched = await operator.request(
        'PATCH',
        `/v1/tenants/${tenantId}/users/${response.body.user.id}`,
        { email },
      );
      expect(patched.status).toBe(422);
    }
    const valid = await signIn({ sub: fresh('mail'), email: 'valid@example.test' });
    expect(valid.body.user.email).toBe('valid@example.test');
  });

  it('leave out an e-mail another user of the tenant has, in any case, and sign the user in', async () => {
    const taken = `${fresh('taken')}@example.test`;
    await seedUser(operator, { tenantId, role: 'viewer', email: taken });
    for (const email of [taken, taken.toUpperCase()]) {
      const response = await signIn({ sub: fresh('dup'), email });
      expect(response.status, JSON.stringify(response.body)).toBe(200);
      expect(response.body.user.email).toBeNull();
    }
    const warnings = lines.filter((line) => String(line['msg']).includes('got no e-mail'));
    expect(warnings.length).toBeGreaterThanOrEqual(2);
    expect(JSON.stringify(warnings)).not.toContain(taken.split('@')[0]);
    expect(JSON.stringify(warnings)).not.toContain(taken.toUpperCase().split('@')[0]);
  });

  it('make one user of concurrent first sign-ins of a subject whose e-mail is taken', async () => {
    const taken = `${fresh('race')}@example.test`;
    await seedUser(operator, { tenantId, role: 'viewer', email: taken });
    const sub = fresh('race');
    const token = await sign({ sub, email: taken });
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => apiClient(server.url, token).get<Me>('/v1/me')),
    );
    expect(answers.map((answer) => answer.status)).toEqual(Array(6).fill(200));
    expect(new Set(answers.map((answer) => answer.body.user.id)).size).toBe(1);
    expect((await subjects()).filter((subject) => subject === sub)).toHaveLength(1);
  });

  it('leave out a blank name or one holding a NUL, and trim the rest', async () => {
    for (const [name, expected] of [
      ['   ', null],
      ['a\u0000b', null],
      ['  Ada Lovelace  ', 'Ada Lovelace'],
    ] as const) {
      const response = await signIn({ sub: fresh('name'), name });
      expect(response.status, JSON.stringify(response.body)).toBe(200);
      expect(response.body.user.displayName, JSON.stringify(name)).toBe(expected);
    }
  });
});

describe('subject claims', () => {
  it('refuse with 401 a subject no user can be stored under, and provision no one', async () => {
    const before = await subjects();
    for (const sub of ['ab\u0000c', randomBytes(2100).toString('base64')]) {
      const response = await signIn({ sub });
      expect(response.status, JSON.stringify(response.body)).toBe(401);
      expect(response.body).toMatchObject({ code: 'unauthenticated' });
      expect(String(response.body['detail'])).toContain("subject claim ('sub')");
      expect(response.headers.get('www-authenticate')).toBe(
        'Bearer realm="brigade", error="invalid_token"',
      );
    }
    expect(await subjects()).toEqual(before);
    const longest = fresh('s').padEnd(1024, 'x');
    expect((await signIn({ sub: longest })).status).toBe(200);
  });
});
