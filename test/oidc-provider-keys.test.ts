import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, apiClient, seedTenant } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * A provider's PEM keys are checked when it is created: each must be a public key the JWT
 * verifier can read, and one of them must verify one of the listed algorithms. Otherwise every
 * sign-in through the provider would fail with nothing but a 401.
 */
let server: TestServer;
let operator: ApiClient;
let providers: string;

const pem = (pair: { publicKey: { export(options: object): string | Buffer } }) =>
  pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const rsa = pem(generateKeyPairSync('rsa', { modulusLength: 2048 }));
const ec = pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }));

interface Problem {
  code: string;
  errors: { path: string; message: string }[];
}

const create = (body: Record<string, unknown>) =>
  operator.post<Problem>(providers, {
    name: 'idp',
    issuer: `https://keys-${Math.random().toString(36).slice(2)}.idp.test`,
    audience: 'brigade',
    ...body,
  });

async function count(): Promise<number> {
  return (await operator.get<{ data: unknown[] }>(providers)).body.data.length;
}

beforeAll(async () => {
  server = await startTestServer();
  operator = apiClient(server.url, testOperatorKey);
  providers = `/v1/tenants/${await seedTenant(operator, 'provider-keys')}/oidc-providers`;
});

afterAll(async () => {
  await server?.stop();
});

describe('createOidcProvider', () => {
  it('refuses a PEM that does not parse, naming its index', async () => {
    const before = await count();
    const response = await create({
      publicKeysPem: [rsa, '-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----'],
    });
    expect(response.status, JSON.stringify(response.body)).toBe(422);
    expect(response.body.code).toBe('validation_failed');
    expect(response.body.errors.map((error) => error.path)).toEqual(['body.publicKeysPem.1']);
    expect(await count()).toBe(before);
  });

  it('refuses a key type no supported algorithm can verify with (Ed448)', async () => {
    const response = await create({
      publicKeysPem: [pem(generateKeyPairSync('ed448'))],
      algorithms: ['EdDSA'],
    });
    expect(response.status).toBe(422);
    expect(response.body.errors).toEqual([
      { path: 'body.publicKeysPem.0', message: expect.stringContaining('ed448') },
    ]);
  });

  it('refuses algorithms none of the keys can verify, naming body.algorithms', async () => {
    const before = await count();
    for (const [keys, algorithms] of [
      [[rsa], ['ES256']],
      [[ec], undefined], // the default, RS256
      [[ec], ['ES384', 'EdDSA']],
    ] as const) {
      const response = await create({
        publicKeysPem: keys,
        ...(algorithms === undefined ? {} : { algorithms }),
      });
      expect(response.status, JSON.stringify(algorithms)).toBe(422);
      expect(response.body.errors.map((error) => error.path)).toEqual(['body.algorithms']);
    }
    expect(await count()).toBe(before);
  });

  it('accepts keys of which one verifies a listed algorithm, stored without surrounding space', async () => {
    const response = await create({
      publicKeysPem: [`\n  ${rsa}\n`, ec],
      algorithms: ['ES256'],
    });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect((response.body as unknown as { publicKeysPem: string[] }).publicKeysPem).toEqual([
      rsa.trim(),
      ec.trim(),
    ]);
  });
});
