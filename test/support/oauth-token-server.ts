import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the mock token endpoint received. */
export interface TokenRequest {
  readonly authorization: string | undefined;
  readonly form: Readonly<Record<string, string>>;
  /** Whose refresh token it carried (undefined when it was unknown). */
  readonly subject: string | undefined;
}

/** How the mock answers refresh requests. */
export type TokenServerMode = 'ok' | 'invalid_grant' | 'unavailable' | 'header_breaking';

/** A mock OAuth 2.0 token endpoint (RFC 6749 §6) with rotating, single-use refresh tokens. */
export interface TokenServer {
  /** The token endpoint. */
  readonly url: string;
  readonly requests: TokenRequest[];
  /** Every token it ever issued, for leak checks. */
  readonly issued: string[];
  mode: TokenServerMode;
  /** How long it takes to answer, in milliseconds. */
  delayMs: number;
  /** `expires_in` of the access tokens it issues. */
  expiresIn: number;
  /** A token pair for `subject`, as an authorisation would have issued it. */
  authorize(subject: string): { accessToken: string; refreshToken: string };
  /** Refresh requests that carried `subject`'s refresh token. */
  countFor(subject: string): number;
  close(): Promise<void>;
}

/** A marker in every token, so a leak check can look for the marker too. */
export const tokenMarker = 'oauthCANARY';

/**
 * Starts the mock token endpoint on 127.0.0.1. Clients (`clients`: id → secret, or null for a
 * public client) authenticate by HTTP Basic or in the body; each refresh token works once and
 * is replaced by a new one (rotation). Error answers echo the refresh token, as a careless
 * server might, so tests can check it never reaches anything Brigade shows.
 */
export async function startTokenServer(
  clients: Readonly<Record<string, string | null>>,
): Promise<TokenServer> {
  const valid = new Map<string, string>();
  const issued: string[] = [];
  let counter = 0;
  const mint = (kind: string, subject: string) => {
    counter += 1;
    const token = `${kind}-${subject}-${counter}-${tokenMarker}-${randomBytes(12).toString('hex')}`;
    issued.push(token);
    return token;
  };
  const authorize = (subject: string) => {
    const refreshToken = mint('rt', subject);
    valid.set(refreshToken, subject);
    return { accessToken: mint('at', subject), refreshToken };
  };
  const clientOk = (authorization: string | undefined, form: Record<string, string>) => {
    if (authorization?.startsWith('Basic ') === true) {
      const [id = '', secret = ''] = Buffer.from(authorization.slice(6), 'base64')
        .toString('utf8')
        .split(':')
        .map(decodeURIComponent);
      return clients[id] === secret;
    }
    const id = form['client_id'] ?? '';
    return id in clients && (clients[id] ?? undefined) === form['client_secret'];
  };
  const state: TokenServer = {
    url: '',
    requests: [],
    issued,
    mode: 'ok',
    delayMs: 0,
    expiresIn: 3600,
    authorize,
    countFor: (subject) => state.requests.filter((request) => request.subject === subject).length,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = createServer((incoming, response) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()));
      const refreshToken = form['refresh_token'] ?? '';
      const subject = valid.get(refreshToken);
      state.requests.push({ authorization: incoming.headers.authorization, form, subject });
      const answer = (status: number, body: unknown) =>
        setTimeout(() => {
          response.writeHead(status, { 'content-type': 'application/json' });
          response.end(JSON.stringify(body));
        }, state.delayMs);
      if (state.mode === 'unavailable')
        return answer(503, { error: 'temporarily_unavailable', echo: refreshToken });
      if (form['grant_type'] !== 'refresh_token') return answer(400, { error: 'invalid_request' });
      if (!clientOk(incoming.headers.authorization, form))
        return answer(401, { error: 'invalid_client' });
      if (state.mode === 'invalid_grant' || subject === undefined)
        return answer(400, {
          error: 'invalid_grant',
          error_description: `refresh token ${refreshToken} is not valid`,
        });
      valid.delete(refreshToken);
      const next = authorize(subject);
      return answer(200, {
        // A token no HTTP header can carry (a broken or hostile server).
        access_token:
          state.mode === 'header_breaking'
            ? `${next.accessToken}\r\nX-Injected: yes`
            : next.accessToken,
        refresh_token: next.refreshToken,
        token_type: 'Bearer',
        expires_in: state.expiresIn,
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, { url: `http://127.0.0.1:${port}/token` });
}
