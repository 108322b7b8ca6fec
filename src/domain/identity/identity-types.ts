import type { Action, Role } from './permissions.ts';

/** An organisation: the unit of isolation. */
export interface Tenant {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly status: 'active' | 'suspended';
  readonly timeZone: string;
  /** Prompt and response text on the tenant's spans (users who consented only), redacted. */
  readonly captureContent: boolean;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A person (or service account) of one tenant, with the role their membership gives. */
export interface User {
  readonly id: string;
  readonly tenantId: string;
  readonly email: string | null;
  readonly displayName: string | null;
  readonly role: Role;
  readonly status: 'active' | 'disabled';
  readonly externalIssuer: string | null;
  readonly externalSubject: string | null;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** Metadata of an API key; the secret is never stored, only its SHA-256. */
export interface ApiKey {
  readonly id: string;
  readonly tenantId: string;
  readonly userId: string;
  readonly name: string;
  /** First characters of the secret, for recognising a key in a list. */
  readonly prefix: string;
  /** Actions the key is limited to; null means every action of the user's role. */
  readonly scopes: readonly Action[] | null;
  readonly expiresAt: Date | null;
  readonly lastUsedAt: Date | null;
  readonly revokedAt: Date | null;
  readonly rotatedFromId: string | null;
  readonly createdAt: Date;
}

/** A key just created: the only time its secret is visible. */
export interface CreatedApiKey {
  readonly key: ApiKey;
  readonly secret: string;
}

/** A tenant's trusted OpenID Connect / JWT issuer. */
export interface OidcProvider {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly issuer: string;
  readonly audience: string;
  readonly jwksUrl: string | null;
  readonly publicKeysPem: readonly string[] | null;
  readonly algorithms: readonly string[];
  readonly subjectClaim: string;
  readonly emailClaim: string;
  readonly nameClaim: string;
  readonly roleClaim: string | null;
  /** Maps values of `roleClaim` to Brigade roles (never to owner). */
  readonly roleMapping: Readonly<Record<string, 'admin' | 'member' | 'viewer'>>;
  readonly defaultRole: 'admin' | 'member' | 'viewer';
  readonly jitProvisioning: boolean;
  readonly enabled: boolean;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A record for the tamper-evident audit log, written in the same transaction as the change. */
export interface AuditRecord {
  readonly action: string;
  readonly targetType: string;
  readonly targetId: string;
  readonly outcome: 'success' | 'failure' | 'denied';
  readonly reason?: string | undefined;
  readonly data?: Readonly<Record<string, unknown>> | undefined;
}
