import { createPublicKey, type KeyObject } from 'node:crypto';

/** The JWS algorithms an OIDC provider may list (`createOidcProvider`'s `algorithms`). */
export const oidcAlgorithms = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;

/** One of {@link oidcAlgorithms}. */
export type OidcAlgorithm = (typeof oidcAlgorithms)[number];

/**
 * A PEM public key as the JWT verifier (jose's `importSPKI`) reads it: the SPKI header first,
 * base64 and white space, the footer last (white space may follow it). jose refuses anything
 * before the header, and text after the footer would be decoded as key bytes.
 */
const spkiPem = /^-----BEGIN PUBLIC KEY-----[A-Za-z0-9+/=\s]+-----END PUBLIC KEY-----\s*$/;

/** Smallest RSA modulus, in bits, jose verifies a signature with (it refuses smaller keys). */
const minRsaBits = 2048;

/** The curve each ECDSA algorithm needs, by Node's curve name. */
const ecdsaCurves: Readonly<Record<string, OidcAlgorithm>> = {
  prime256v1: 'ES256',
  secp384r1: 'ES384',
  secp521r1: 'ES512',
};

/**
 * The algorithms a public key can verify, as the JWT verifier (jose 6 on Node's WebCrypto)
 * accepts them: an RSA key (`rsaEncryption`, at least 2,048 bits) the RS and PS families, an
 * EC key the ES algorithm of its curve (P-256, P-384, P-521), an Ed25519 key EdDSA. jose
 * verifies EdDSA with Ed25519 only, and imports neither Ed448 keys nor RSA-PSS-only
 * (`id-RSASSA-PSS`) SPKI keys, so those verify nothing.
 */
export function verifiableAlgorithms(key: KeyObject): readonly OidcAlgorithm[] {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return (details.modulusLength ?? 0) >= minRsaBits
        ? oidcAlgorithms.filter((algorithm) => /^(RS|PS)/.test(algorithm))
        : [];
    case 'ec': {
      const algorithm = ecdsaCurves[details.namedCurve ?? ''];
      return algorithm === undefined ? [] : [algorithm];
    }
    case 'ed25519':
      return ['EdDSA'];
    default:
      return [];
  }
}

/** A PEM that parses, or why it does not (a sentence fragment naming no key material). */
export type ParsedPem = { key: KeyObject } | { problem: string };

/** Parses an OIDC provider's PEM public key with node:crypto, as the verifier will use it. */
export function parsePublicKeyPem(pem: string): ParsedPem {
  if (!spkiPem.test(pem))
    return {
      problem:
        'must be one PEM-encoded public key: "-----BEGIN PUBLIC KEY-----", base64, "-----END PUBLIC KEY-----"',
    };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    return { problem: 'is not a public key that can be read (the base64 is not an SPKI key)' };
  }
  if (verifiableAlgorithms(key).length > 0) return { key };
  const type = key.asymmetricKeyType ?? 'unknown';
  const size = type === 'rsa' ? ` of ${key.asymmetricKeyDetails?.modulusLength ?? 0} bits` : '';
  return {
    problem: `is a ${type} key${size}, which verifies none of ${oidcAlgorithms.join(', ')} (RSA keys need at least ${minRsaBits} bits; EC keys P-256, P-384 or P-521; EdDSA an Ed25519 key)`,
  };
}

/**
 * Why none of a provider's PEM keys can verify any of its algorithms; undefined when one can
 * (or a key does not parse: that key's own problem is reported instead).
 */
export function algorithmsProblem(
  pems: readonly string[],
  algorithms: readonly OidcAlgorithm[],
): string | undefined {
  const usable = new Set<OidcAlgorithm>();
  for (const pem of pems) {
    const parsed = parsePublicKeyPem(pem);
    if (!('key' in parsed)) return undefined;
    for (const algorithm of verifiableAlgorithms(parsed.key)) usable.add(algorithm);
  }
  if (algorithms.some((algorithm) => usable.has(algorithm))) return undefined;
  return `none of the public keys can verify ${algorithms.join(', ')}; they verify ${[...usable].join(', ')}`;
}
