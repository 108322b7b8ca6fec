import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';

/**
 * The attacker's tools: identity provider keys and ID tokens, one request as a hostile caller
 * sends it, and a small worker pool.
 */

/** An identity provider's RSA key pair: the private key signs, the PEM goes to Brigade. */
export interface IdentityProviderKey {
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
}

/** Generates an RSA identity provider key (about 100 ms each, so tests keep a small pool). */
export function createIdentityProviderKey(): IdentityProviderKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** Signs a five-minute RS256 ID token as an identity provider holding `key` would. */
export function signIdToken(options: {
  readonly issuer: string;
  readonly audience: string;
  readonly key: KeyObject;
  readonly claims: Record<string, unknown>;
}): Promise<string> {
  return new SignJWT(options.claims)
    .setProtectedHeader({ alg: 'RS256' })
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(options.key);
}

/** A response as the attack sees it: status, raw text (for leak checks) and parsed JSON. */
export interface Outcome {
  readonly status: number;
  readonly text: string;
  readonly json: unknown;
}

/** One HTTP request of the attack, with any extra headers the attacker chooses. */
export interface AttackRequest {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

/**
 * Sends `request` to `url` with `credential` as bearer token. An event stream is not read
 * (a wrongly granted one would never end); every request gives up after 15 s.
 */
export async function send(
  url: string,
  credential: string,
  request: AttackRequest,
): Promise<Outcome> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${credential}`,
    ...request.headers,
  };
  if (request.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${url}${request.path}`, {
    method: request.method.toUpperCase(),
    headers,
    signal: AbortSignal.timeout(15_000),
    ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) }),
  });
  if ((response.headers.get('content-type') ?? '').includes('text/event-stream')) {
    await response.body?.cancel();
    return { status: response.status, text: '', json: null };
  }
  const text = await response.text();
  let json: unknown = null;
  try {
    json = text.length === 0 ? null : JSON.parse(text);
  } catch {
    // Not JSON: the leak checks still read the text.
  }
  return { status: response.status, text, json };
}

/** Runs `work` over `items` with at most 8 in flight. */
export async function inPool<T>(
  items: readonly T[],
  work: (item: T) => Promise<void>,
): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}
