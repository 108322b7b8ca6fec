import {
  CredentialRefreshError,
  type OAuthRefreshRequest,
  type OAuthTokenGrant,
  type OAuthTokenRefresher,
} from '../../domain/tools/oauth-types.ts';
import { assertEgressAllowed, type EgressPolicy, staticEgressProblems } from './egress-guard.ts';

/** Default deadline of one token request, in milliseconds. */
export const defaultTokenTimeoutMs = 10_000;
/** Default cap on a token response body, in bytes. */
export const defaultTokenResponseBytes = 64 * 1024;

/**
 * Problems with a token endpoint URL, without resolving it: https only (http only where
 * private networks are allowed), and the tools' egress rules (allow-list, no literal private
 * address unless allowed, no credentials in the URL).
 */
export function tokenUrlProblems(text: string, egress: EgressPolicy): string[] {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return ['the token URL is not a valid URL'];
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && egress.allowPrivateNetworks))
    return ['the token URL must use https'];
  if (url.hash !== '') return ['the token URL may not have a fragment'];
  return staticEgressProblems(url, egress);
}

/** Checks a token endpoint URL fully (its host resolved), as before every request to it. */
export async function assertTokenUrlAllowed(text: string, egress: EgressPolicy): Promise<URL> {
  const problems = tokenUrlProblems(text, egress);
  if (problems.length > 0) throw new Error(problems.join('; '));
  const url = new URL(text);
  await assertEgressAllowed(url, egress);
  return url;
}

/** RFC 6749 §2.3.1: client id and secret are form-encoded before HTTP Basic. */
function basicAuthorization(clientId: string, clientSecret: string): string {
  const encode = (value: string) => new URLSearchParams({ v: value }).toString().slice(2);
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

/** Reads at most `maxBytes` of a body; undefined when it is longer. */
async function readCapped(response: Response, maxBytes: number): Promise<string | undefined> {
  const reader = response.body?.getReader();
  if (reader === undefined) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The `error` code of an RFC 6749 §5.2 error response, when it is one of the known codes. */
function errorCode(text: string | undefined): string | undefined {
  try {
    const parsed = JSON.parse(text ?? '') as { error?: unknown };
    const known = [
      'invalid_request',
      'invalid_client',
      'invalid_grant',
      'unauthorized_client',
      'unsupported_grant_type',
      'invalid_scope',
    ];
    return typeof parsed.error === 'string' && known.includes(parsed.error)
      ? parsed.error
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A token usable in an HTTP header: 1–8,192 characters, none a control character (a CR/LF in
 * a token would be stored as valid and then fail every call it was sent with).
 */
function isUsableToken(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= 8_192 &&
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses.
    !/[\u0000-\u001f\u007f]/.test(value)
  );
}

function parseGrant(text: string | undefined): OAuthTokenGrant | undefined {
  try {
    const parsed = JSON.parse(text ?? '') as Record<string, unknown>;
    const accessToken = parsed['access_token'];
    const refreshToken = parsed['refresh_token'];
    const expiresIn = Number(parsed['expires_in']);
    if (!isUsableToken(accessToken)) return undefined;
    if (refreshToken !== undefined && !isUsableToken(refreshToken)) return undefined;
    return {
      accessToken,
      ...(typeof refreshToken === 'string' ? { refreshToken } : {}),
      ...(Number.isFinite(expiresIn) && expiresIn >= 0 ? { expiresIn } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * The OAuth 2.0 token client: one refresh_token grant per call (RFC 6749 §6), a form-encoded
 * POST to the credential's token endpoint after the tools' egress check, client
 * authentication by HTTP Basic or in the body, no redirects, a deadline and a cap on the
 * response. Errors say what happened in Brigade's words only: the server's body can echo
 * tokens, so it never reaches a message. The request is not tied to the calling tool's
 * abort signal: a refresh the server has performed must be stored, or a rotated refresh
 * token would be lost.
 */
export function createOAuthTokenClient(options: {
  readonly egress: EgressPolicy;
  readonly fetch?: typeof fetch;
  readonly timeoutMs?: number;
  readonly maxResponseBytes?: number;
}): OAuthTokenRefresher {
  const request = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? defaultTokenTimeoutMs;
  const maxBytes = options.maxResponseBytes ?? defaultTokenResponseBytes;
  return async ({ settings, refreshToken, clientSecret }: OAuthRefreshRequest) => {
    let url: URL;
    try {
      url = await assertTokenUrlAllowed(settings.tokenUrl, options.egress);
    } catch (error) {
      throw new CredentialRefreshError(
        'credential_refresh_failed',
        `the token endpoint is not allowed (${(error as Error).message}).`,
      );
    }
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken });
    if (settings.scope !== undefined) form.set('scope', settings.scope);
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/x-www-form-urlencoded',
    };
    if (clientSecret !== undefined && settings.clientAuthMethod === 'client_secret_basic')
      headers['authorization'] = basicAuthorization(settings.clientId, clientSecret);
    else {
      form.set('client_id', settings.clientId);
      if (clientSecret !== undefined) form.set('client_secret', clientSecret);
    }
    let status: number;
    let text: string | undefined;
    try {
      const response = await request(url, {
        method: 'POST',
        headers,
        body: form.toString(),
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = response.status;
      text = await readCapped(response, maxBytes);
    } catch (error) {
      const timedOut = (error as Error).name === 'TimeoutError';
      throw new CredentialRefreshError(
        'credential_refresh_unavailable',
        timedOut
          ? `the token endpoint did not answer within ${timeoutMs} ms; try again later.`
          : 'the token endpoint could not be reached; try again later.',
      );
    }
    if (status === 429 || status >= 500)
      throw new CredentialRefreshError(
        'credential_refresh_unavailable',
        `the token endpoint answered ${status}; try again later.`,
      );
    if (text === undefined)
      throw new CredentialRefreshError(
        'credential_refresh_failed',
        `the token endpoint's answer was larger than ${maxBytes} bytes.`,
      );
    if (status >= 200 && status < 300) {
      const grant = parseGrant(text);
      if (grant === undefined)
        throw new CredentialRefreshError(
          'credential_refresh_failed',
          'the token endpoint answered without a valid access token.',
        );
      return grant;
    }
    const code = errorCode(text);
    if (code === 'invalid_grant')
      throw new CredentialRefreshError(
        'credential_reauthorization_required',
        'the token server refused the refresh token; the owner must authorise again.',
      );
    throw new CredentialRefreshError(
      'credential_refresh_failed',
      `the token endpoint answered ${status}${code === undefined ? '' : ` (${code})`}.`,
    );
  };
}
