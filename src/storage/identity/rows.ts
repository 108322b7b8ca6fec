import type { Selectable } from 'kysely';
import type { ApiKey, OidcProvider, Tenant, User } from '../../domain/identity/identity-types.ts';
import type { Action, Role } from '../../domain/identity/permissions.ts';
import type {
  ApiKeysTable,
  OidcProvidersTable,
  TenantsTable,
  UsersTable,
} from '../postgres/database-schema.ts';

type Json = Record<string, unknown>;

/** Maps a `brigade.tenants` row to a {@link Tenant}. */
export function toTenant(row: Selectable<TenantsTable>): Tenant {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    status: row.status,
    timeZone: row.time_zone,
    captureContent: row.capture_content,
    metadata: row.metadata as Json,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** Maps a user row joined with its membership role to a {@link User}. */
export function toUser(row: Selectable<UsersTable> & { role: Role }): User {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    email: row.email,
    displayName: row.display_name,
    role: row.role,
    status: row.status,
    externalIssuer: row.external_issuer,
    externalSubject: row.external_subject,
    metadata: row.metadata as Json,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** Maps a `brigade.api_keys` row to {@link ApiKey} (the hash never leaves storage). */
export function toApiKey(row: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    userId: row.user_id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes as Action[] | null,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
    rotatedFromId: row.rotated_from_id,
    createdAt: row.created_at,
  };
}

/** Maps a `brigade.oidc_providers` row to an {@link OidcProvider}. */
export function toOidcProvider(row: Selectable<OidcProvidersTable>): OidcProvider {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    issuer: row.issuer,
    audience: row.audience,
    jwksUrl: row.jwks_url,
    publicKeysPem: row.public_keys_pem,
    algorithms: row.algorithms,
    subjectClaim: row.subject_claim,
    emailClaim: row.email_claim,
    nameClaim: row.name_claim,
    roleClaim: row.role_claim,
    roleMapping: row.role_mapping as OidcProvider['roleMapping'],
    defaultRole: row.default_role,
    jitProvisioning: row.jit_provisioning,
    enabled: row.enabled,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
