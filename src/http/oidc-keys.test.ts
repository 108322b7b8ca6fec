import { generateKeyPairSync } from 'node:crypto';
import { importPKCS8, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import type { OidcProvider } from '../domain/identity/identity-types.ts';
import { createJwtVerifier } from './auth/jwt-verifier.ts';
import {
  algorithmsProblem,
  oidcAlgorithms,
  parsePublicKeyPem,
  verifiableAlgorithms,
} from './oidc-keys.ts';

/** Key pairs of every kind a provider could be given, usable by jose or not. */
const kinds = {
  rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  rsa1024: generateKeyPairSync('rsa', { modulusLength: 1024 }),
  rsaPss: generateKeyPairSync('rsa-pss', { modulusLength: 2048 }),
  p256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  p384: generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  p521: generateKeyPairSync('ec', { namedCurve: 'P-521' }),
  secp256k1: generateKeyPairSync('ec', { namedCurve: 'secp256k1' }),
  ed25519: generateKeyPairSync('ed25519'),
  ed448: generateKeyPairSync('ed448'),
  x25519: generateKeyPairSync('x25519'),
};

const spki = (pair: (typeof kinds)[keyof typeof kinds]) =>
  pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();

function provider(pem: string, algorithm: string): OidcProvider {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    tenantId: '00000000-0000-4000-8000-000000000002',
    issuer: 'https://idp.test',
    audience: 'brigade',
    jwksUrl: null,
    publicKeysPem: [pem],
    algorithms: [algorithm],
  } as unknown as OidcProvider;
}

/** Whether Brigade's JWT verifier accepts a token signed by `pair` with `algorithm`. */
async function verifierAccepts(
  pair: (typeof kinds)[keyof typeof kinds],
  algorithm: string,
): Promise<boolean> {
  const verifier = createJwtVerifier({ jwksCacheMs: 1000, clockToleranceSeconds: 0 });
  try {
    const privateKey = await importPKCS8(
      pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      algorithm,
    );
    const token = await new SignJWT({ sub: 'a' })
      .setProtectedHeader({ alg: algorithm })
      .setIssuer('https://idp.test')
      .setAudience('brigade')
      .setExpirationTime('5m')
      .sign(privateKey);
    await verifier.verify(provider(spki(pair), algorithm), token);
    return true;
  } catch {
    return false;
  }
}

describe('the algorithms a provider key can verify', () => {
  it('are exactly those the JWT verifier accepts a signature of', async () => {
    for (const [name, pair] of Object.entries(kinds)) {
      const parsed = parsePublicKeyPem(spki(pair));
      const claimed = 'key' in parsed ? verifiableAlgorithms(parsed.key) : [];
      const accepted = [];
      for (const algorithm of oidcAlgorithms)
        if (await verifierAccepts(pair, algorithm)) accepted.push(algorithm);
      expect(claimed, name).toEqual(accepted);
      // A key that verifies nothing is refused by itself.
      expect('problem' in parsed, name).toBe(accepted.length === 0);
    }
  });
});

describe('a provider PEM', () => {
  it('is refused when it is not one readable SPKI public key', () => {
    const good = spki(kinds.rsa);
    for (const pem of [
      '-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----',
      'hello',
      ` ${good}`,
      `${good}\ntrailing`,
      good.replace('PUBLIC', 'RSA PUBLIC'),
      kinds.rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    ])
      expect(parsePublicKeyPem(pem), pem).toHaveProperty('problem');
    expect(parsePublicKeyPem(good)).toHaveProperty('key');
  });

  it('names the algorithms when no key can verify any of them', () => {
    expect(algorithmsProblem([spki(kinds.rsa)], ['ES256'])).toContain('verify RS256');
    expect(algorithmsProblem([spki(kinds.rsa), spki(kinds.p256)], ['ES256'])).toBeUndefined();
    expect(algorithmsProblem([spki(kinds.p384)], ['ES256', 'ES512'])).toBeDefined();
    expect(algorithmsProblem([spki(kinds.ed25519)], ['EdDSA'])).toBeUndefined();
  });
});
