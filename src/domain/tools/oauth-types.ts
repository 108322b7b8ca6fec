/**
 * How Brigade authenticates as the OAuth client at the token endpoint (RFC 6749 §2.3.1; names
 * from RFC 7591): HTTP Basic, or `client_id` and `client_secret` in the form body. A client
 * without a secret (a public client) sends only `client_id` in the body, whatever this says.
 */
export const oauthClientAuthMethods = ['client_secret_basic', 'client_secret_post'] as const;

/** One of {@link oauthClientAuthMethods}. */
export type OAuthClientAuthMethod = (typeof oauthClientAuthMethods)[number];

/** The settings of an OAuth 2.0 credential that are not secret (stored in the clear). */
export interface OAuthSettings {
  /** The token endpoint (https, or http only where private networks are allowed). */
  readonly tokenUrl: string;
  readonly clientId: string;
  readonly scope?: string | undefined;
  readonly clientAuthMethod: OAuthClientAuthMethod;
  /** The tenant-shared credential holding the client secret, when it is not inline. */
  readonly clientSecretCredential?: string | undefined;
}

/** The token material of an OAuth 2.0 credential: sealed in the vault, never listed. */
export interface OAuthSecrets {
  readonly accessToken: string;
  readonly refreshToken: string;
  /** The client secret, when it is kept inline rather than in a shared credential. */
  readonly clientSecret?: string | undefined;
}

/** What a successful refresh returned (RFC 6749 §5.1). */
export interface OAuthTokenGrant {
  readonly accessToken: string;
  /** Present when the server rotates refresh tokens; else the old one stays valid. */
  readonly refreshToken?: string | undefined;
  /** Lifetime of the new access token in seconds, when the server says. */
  readonly expiresIn?: number | undefined;
}

/** The refresh_token grant request the vault hands the token client (secrets included). */
export interface OAuthRefreshRequest {
  readonly settings: OAuthSettings;
  readonly refreshToken: string;
  readonly clientSecret: string | undefined;
}

/**
 * Performs one refresh_token grant (RFC 6749 §6). Throws {@link CredentialRefreshError}: with
 * `credential_reauthorization_required` when the server refused the refresh token
 * (`invalid_grant`), `credential_refresh_unavailable` (retryable) for network errors,
 * timeouts, 429 and 5xx, `credential_refresh_failed` for anything else.
 */
export type OAuthTokenRefresher = (request: OAuthRefreshRequest) => Promise<OAuthTokenGrant>;

/** Stable codes of a failed OAuth credential, as tool calls report them to the model. */
export type CredentialRefreshErrorCode =
  | 'credential_reauthorization_required'
  | 'credential_refresh_unavailable'
  | 'credential_refresh_failed'
  /** The credential names the hosts it may go to, and the call's destination is not one. */
  | 'credential_host_not_allowed';

/**
 * A credential could not be made usable for a tool call. The message is safe to show to the
 * model and to log: it names the credential and the reason, never a token or the token
 * server's response body.
 */
export class CredentialRefreshError extends Error {
  readonly code: CredentialRefreshErrorCode;
  /** True when trying the call again later may succeed (the credential is not broken). */
  readonly retryable: boolean;
  /** The message without its code. */
  readonly detail: string;
  constructor(code: CredentialRefreshErrorCode, detail: string) {
    super(`${code}: ${detail}`);
    this.name = 'CredentialRefreshError';
    this.code = code;
    this.detail = detail;
    this.retryable = code === 'credential_refresh_unavailable';
  }
}
