import { sql } from 'kysely';
import type { OAuthSecrets, OAuthSettings } from '../../domain/tools/oauth-types.ts';

/*
 * The vault's row and metadata types (split from credential-store.ts): what a credential
 * holds, what a listing shows, and the columns read for both.
 */

/** Kinds of credential the vault keeps; the kind says how a tool presents it. */
export const credentialKinds = ['api_key', 'bearer_token', 'basic', 'oauth2'] as const;

/** Kinds whose secret is one string the user gives. */
export const plainCredentialKinds = ['api_key', 'bearer_token', 'basic'] as const;

/** A kind of credential. */
export type CredentialKind = (typeof credentialKinds)[number];

/** What a credential to store holds: one secret, or OAuth 2.0 tokens and their client. */
export type CredentialInput =
  | { readonly kind: (typeof plainCredentialKinds)[number]; readonly secret: string }
  | {
      readonly kind: 'oauth2';
      readonly oauth: OAuthSettings;
      readonly secrets: OAuthSecrets;
      readonly expiresAt: Date;
    };

/** The state of an OAuth credential as listings show it: never a token. */
export interface OAuthMetadata {
  readonly expiresAt: Date | null;
  readonly refreshedAt: Date | null;
  /** `reauthorization_required` once the token server refused the refresh token. */
  readonly status: 'active' | 'reauthorization_required';
  readonly refreshFailedAt: Date | null;
}

/** What a listing shows of a credential: never the secret. */
export interface CredentialMetadata {
  readonly id: string;
  readonly name: string;
  readonly kind: CredentialKind;
  /** `user` for the caller's own, `tenant` for a tenant-shared one. */
  readonly scope: 'user' | 'tenant';
  /** Of the secret; of the current access token for `oauth2`. */
  readonly fingerprint: string;
  readonly last4: string;
  readonly createdAt: Date;
  /** The only hosts (`host` or `host:port`) it may be sent to; null: any the tools go to. */
  readonly allowedHosts: readonly string[] | null;
  /** Only for `oauth2` credentials. */
  readonly oauth2?: OAuthMetadata;
}

/** A secret decrypted for one tool call, with the id to audit its use. */
export interface ResolvedCredential {
  readonly id: string;
  readonly name: string;
  readonly kind: CredentialKind;
  readonly scope: 'user' | 'tenant';
  /** The secret; the current access token of an `oauth2` credential. */
  readonly secret: string;
}

export interface CredentialRow {
  id: string;
  user_id: string | null;
  name: string;
  kind: CredentialKind;
  ciphertext: Buffer;
  fingerprint: string;
  last4: string;
  created_at: Date;
  expires_at: Date | null;
  refreshed_at: Date | null;
  refresh_failure: string | null;
  refresh_failed_at: Date | null;
  allowed_hosts: string[] | null;
}

export function toMetadata(row: Omit<CredentialRow, 'ciphertext'>): CredentialMetadata {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    scope: row.user_id === null ? 'tenant' : 'user',
    fingerprint: row.fingerprint,
    last4: row.last4,
    createdAt: row.created_at,
    allowedHosts: row.allowed_hosts,
    ...(row.kind === 'oauth2'
      ? {
          oauth2: {
            expiresAt: row.expires_at,
            refreshedAt: row.refreshed_at,
            status: row.refresh_failure === null ? 'active' : 'reauthorization_required',
            refreshFailedAt: row.refresh_failed_at,
          },
        }
      : {}),
  };
}

export const metadataColumns = sql.raw(
  'id, user_id, name, kind, fingerprint, last4, created_at, expires_at, refreshed_at, refresh_failure, refresh_failed_at, allowed_hosts',
);

export type Lookup =
  | { readonly kind: 'none' }
  | { readonly kind: 'due'; readonly id: string; readonly name: string }
  | { readonly kind: 'refused'; readonly name: string }
  | { readonly kind: 'barred'; readonly name: string; readonly destination: string }
  | { readonly kind: 'resolved'; readonly credential: ResolvedCredential };

/**
 * The destination a credential with `allowedHosts` may not be sent to (its `host`, or
 * `a local process`); undefined when it may be sent (no list, or a listed host).
 */
export function barredDestination(
  allowedHosts: readonly string[] | null,
  destination: URL | undefined,
): string | undefined {
  if (allowedHosts === null) return undefined;
  if (destination === undefined) return 'a local process';
  const listed =
    allowedHosts.includes(destination.host) || allowedHosts.includes(destination.hostname);
  return listed ? undefined : destination.host;
}
