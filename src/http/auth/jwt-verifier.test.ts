import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import type { OidcProvider } from '../../domain/identity/identity-types.ts';
import { createJwtVerifier, jwksUrlProblems } from './jwt-verifier.ts';

/** A tenant chooses its JWKS URL, so Brigade must not fetch it from inside its own network. */
function provider(jwksUrl: string): OidcProvider {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    tenantId: '00000000-0000-4000-8000-000000000002',
    name: 'idp',
    issuer: 'https://idp.test',
    audience: 'brigade',
    jwksUrl,
    publicKeysPem: null,
    algorithms: ['ES256'],
    subjectClaim: 'sub',
    emailClaim: 'email',
    nameClaim: 'name',
    roleClaim: null,
    roleMapping: {},
    defaultRole: 'member',
    jitProvisioning: false,
    enabled: true,
    createdAt: new Date(),
    updatedAt: new Date(),
  } as OidcProvider;
}

async function token(): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  return new SignJWT({ sub: 'someone' })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer('https://idp.test')
    .setAudience('brigade')
    .setExpirationTime('5m')
    .sign(privateKey);
}

describe('tenant JWKS URLs', () => {
  it('refuse literal private and loopback addresses when created, unless private networks are allowed', () => {
    for (const url of [
      'https://10.1.2.3/jwks',
      'https://169.254.169.254/keys',
      'https://[fd00::1]/k',
      'http://127.0.0.1:8080/jwks',
      'http://[::1]/jwks',
    ])
      expect(jwksUrlProblems(new URL(url), false), url).not.toEqual([]);
    expect(jwksUrlProblems(new URL('https://idp.test/k'), false)).toEqual([]);
    for (const url of ['https://10.1.2.3/jwks', 'http://127.0.0.1:8080/jwks'])
      expect(jwksUrlProblems(new URL(url), true), url).toEqual([]);
  });

  it('are not fetched from localhost unless private networks are allowed', async () => {
    const verifier = createJwtVerifier({
      jwksCacheMs: 1_000,
      clockToleranceSeconds: 0,
      resolve: async () => ['127.0.0.1'],
    });
    await expect(
      verifier.verify(provider('http://localhost:9/jwks'), await token()),
    ).rejects.toThrow(/private or loopback/);
  });

  it('are not fetched from a host that resolves to a private address', async () => {
    const asked: string[] = [];
    const verifier = createJwtVerifier({
      jwksCacheMs: 1_000,
      clockToleranceSeconds: 0,
      resolve: async (host) => {
        asked.push(host);
        return ['10.0.0.7'];
      },
    });
    await expect(
      verifier.verify(provider('https://idp.internal.test/jwks'), await token()),
    ).rejects.toThrow(/private or loopback/);
    expect(asked).toEqual(['idp.internal.test']);
  });

  it('are fetched from such a host when private networks are allowed', async () => {
    const verifier = createJwtVerifier({
      jwksCacheMs: 1_000,
      clockToleranceSeconds: 0,
      allowPrivateNetworks: true,
      resolve: async () => ['10.0.0.7'],
    });
    // Nothing listens there: the fetch itself fails, not the address check.
    await expect(
      verifier.verify(provider('https://idp.invalid/jwks'), await token()),
    ).rejects.not.toThrow(/private or loopback/);
  });
});

describe('JWKS key sets', () => {
  /** A JWKS server on loopback: every path serves `body(path)`; `fetched` lists the paths asked. */
  async function jwksServer(body: (path: string) => string) {
    const fetched: string[] = [];
    const server = createServer((request, response) => {
      fetched.push(request.url ?? '');
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(body(request.url ?? ''));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return { fetched, url: (path: string) => `http://127.0.0.1:${port}${path}`, server };
  }

  async function signer() {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    const sign = () =>
      new SignJWT({ sub: 'someone' })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer('https://idp.test')
        .setAudience('brigade')
        .setExpirationTime('5m')
        .sign(privateKey);
    return { jwks: JSON.stringify({ keys: [jwk] }), sign };
  }

  function providerOf(id: number, jwksUrl: string): OidcProvider {
    return { ...provider(jwksUrl), id: `00000000-0000-4000-8000-${String(id).padStart(12, '0')}` };
  }

  it('are kept for a bounded number of providers, the least recently used dropped first', async () => {
    const keys = await signer();
    const jwks = await jwksServer(() => keys.jwks);
    try {
      const verifier = createJwtVerifier({
        jwksCacheMs: 600_000,
        clockToleranceSeconds: 0,
        allowPrivateNetworks: true,
        maxKeySets: 2,
      });
      const first = providerOf(0, jwks.url('/p0'));
      await verifier.verify(first, await keys.sign());
      await verifier.verify(first, await keys.sign());
      expect(jwks.fetched).toEqual(['/p0']);
      // Providers are created and deleted by tenant owners at will: each one used must not
      // leave a key set behind for the process's life.
      for (const id of [1, 2])
        await verifier.verify(providerOf(id, jwks.url(`/p${id}`)), await keys.sign());
      await verifier.verify(first, await keys.sign());
      expect(jwks.fetched).toEqual(['/p0', '/p1', '/p2', '/p0']);
    } finally {
      jwks.server.close();
    }
  });

  it('are not read past a megabyte', async () => {
    const keys = await signer();
    const padding = JSON.stringify({ kty: 'oct', k: 'A'.repeat(1_000) });
    const jwks = await jwksServer(() => {
      const key = JSON.parse(keys.jwks).keys[0];
      return JSON.stringify({
        keys: [key, ...Array.from({ length: 1_100 }, () => JSON.parse(padding))],
      });
    });
    try {
      const verifier = createJwtVerifier({
        jwksCacheMs: 600_000,
        clockToleranceSeconds: 0,
        allowPrivateNetworks: true,
      });
      await expect(
        verifier.verify(providerOf(0, jwks.url('/big')), await keys.sign()),
      ).rejects.toThrow(/larger than/);
    } finally {
      jwks.server.close();
    }
  });
});
