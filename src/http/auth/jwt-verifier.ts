import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  importSPKI,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import type { OidcProvider } from '../../domain/identity/identity-types.ts';
import { createLruMap } from '../../gateway/lru-map.ts';
import { assertEgressAllowed, staticEgressProblems } from '../../runtime/tools/egress-guard.ts';
import { readCapped } from '../../runtime/tools/read-capped.ts';

/**
 * What is wrong with a tenant's JWKS URL before anything is fetched: a literal private or
 * loopback address (unless private networks are allowed: loopback hosts the most sensitive
 * listeners, Brigade's own and its sidecars'); host names are resolved and checked when the
 * keys are fetched.
 */
export function jwksUrlProblems(url: URL, allowPrivateNetworks: boolean): string[] {
  return staticEgressProblems(url, { allowedHosts: [], allowPrivateNetworks });
}

/** Verifies a JWT against one tenant's OIDC provider; returns the payload or throws. */
export interface JwtVerifier {
  /** The unverified `iss` claim, used only to find candidate providers. */
  peekIssuer(token: string): string | undefined;
  verify(provider: OidcProvider, token: string): Promise<JWTPayload>;
}

/** Options for {@link createJwtVerifier}. */
export interface JwtVerifierOptions {
  readonly jwksCacheMs: number;
  readonly clockToleranceSeconds: number;
  /** `auth.jwksAllowPrivateNetworks`: JWKS may be fetched from private addresses. */
  readonly allowPrivateNetworks?: boolean;
  /** Resolves a JWKS host to its addresses (tests); defaults to the system resolver. */
  readonly resolve?: (host: string) => Promise<readonly string[]>;
  /** Key sets kept, the least recently used dropped first (default {@link maxKeySets}). */
  readonly maxKeySets?: number;
}

/**
 * Key sets kept per process, the least recently used dropped first. A key set is cached per
 * provider and URL, and providers are created, changed and deleted by tenant owners at will:
 * one kept for every provider and URL ever used grew without bound.
 */
const maxKeySets = 10_000;

/**
 * Largest JWKS document read, in characters. The URL is a tenant's: a key set is a few KB,
 * and a response of hundreds of MB would otherwise be buffered and parsed whole.
 */
export const maxJwksChars = 1_048_576;

/**
 * The JWKS response `response`, read up to {@link maxJwksChars}; a larger one is refused
 * before it is parsed (a non-200 answer is handed on unread: jose refuses it).
 */
async function cappedJwks(response: Response): Promise<Response> {
  if (response.status !== 200) return response;
  const body = await readCapped(response, { maxChars: maxJwksChars });
  if (body.truncated)
    throw new Error(`the JWKS document is larger than ${maxJwksChars} characters`);
  return new Response(body.text, { status: 200, headers: response.headers });
}

/** The jose-based {@link JwtVerifier}; JWKS sets are cached per provider and URL. */
export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  const keySets = createLruMap<JWTVerifyGetKey>(options.maxKeySets ?? maxKeySets);
  function keySetFor(provider: OidcProvider, url: string): JWTVerifyGetKey {
    const cacheKey = `${provider.id}|${url}`;
    let keySet = keySets.get(cacheKey);
    if (keySet === undefined) {
      keySet = createRemoteJWKSet(new URL(url), {
        cacheMaxAge: options.jwksCacheMs,
        cooldownDuration: 30_000,
        timeoutDuration: 5_000,
        // A tenant chooses the URL: its host is resolved and refused when private (no request
        // into the deployment's network), then fetched without following redirects.
        [customFetch]: async (resource, init) => {
          await assertEgressAllowed(new URL(resource), {
            allowedHosts: [],
            allowPrivateNetworks: options.allowPrivateNetworks ?? false,
            ...(options.resolve === undefined ? {} : { resolve: options.resolve }),
          });
          return cappedJwks(await fetch(resource, init));
        },
      });
      keySets.set(cacheKey, keySet);
    }
    return keySet;
  }
  return {
    peekIssuer(token) {
      try {
        const issuer = decodeJwt(token).iss;
        return typeof issuer === 'string' && issuer.length <= 2048 ? issuer : undefined;
      } catch {
        return undefined;
      }
    },
    async verify(provider, token) {
      const verifyOptions = {
        issuer: provider.issuer,
        audience: provider.audience,
        algorithms: [...provider.algorithms],
        clockTolerance: options.clockToleranceSeconds,
        requiredClaims: ['exp'],
      };
      if (provider.jwksUrl !== null) {
        return (await jwtVerify(token, keySetFor(provider, provider.jwksUrl), verifyOptions))
          .payload;
      }
      let lastError: unknown = new Error('no keys configured');
      for (const pem of provider.publicKeysPem ?? []) {
        for (const algorithm of provider.algorithms) {
          try {
            const key = await importSPKI(pem, algorithm);
            return (await jwtVerify(token, key, verifyOptions)).payload;
          } catch (error) {
            lastError = error;
          }
        }
      }
      throw lastError;
    },
  };
}
