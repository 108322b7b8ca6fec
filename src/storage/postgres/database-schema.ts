import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json = ColumnType<unknown, string | undefined, string>;

/** Row type of `brigade.tenants`. */
export interface TenantsTable {
  id: Generated<string>;
  slug: string;
  name: string;
  status: Generated<'active' | 'suspended'>;
  time_zone: Generated<string>;
  metadata: Json;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** Row type of `brigade.users`. */
export interface UsersTable {
  tenant_id: string;
  id: Generated<string>;
  email: string | null;
  display_name: string | null;
  status: Generated<'active' | 'disabled'>;
  external_issuer: string | null;
  external_subject: string | null;
  metadata: Json;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** Row type of `brigade.memberships`. */
export interface MembershipsTable {
  tenant_id: string;
  user_id: string;
  role: 'owner' | 'admin' | 'member' | 'viewer';
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** Row type of `brigade.api_keys`. */
export interface ApiKeysTable {
  tenant_id: string;
  id: Generated<string>;
  user_id: string;
  name: string;
  prefix: string;
  key_hash: Buffer;
  scopes: string[] | null;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  rotated_from_id: string | null;
  created_by_user_id: string | null;
  created_at: Timestamp;
}

/** Row type of `brigade.oidc_providers`. */
export interface OidcProvidersTable {
  tenant_id: string;
  id: Generated<string>;
  name: string;
  issuer: string;
  audience: string;
  jwks_url: string | null;
  public_keys_pem: string[] | null;
  algorithms: string[];
  subject_claim: Generated<string>;
  email_claim: Generated<string>;
  name_claim: Generated<string>;
  role_claim: string | null;
  role_mapping: Json;
  default_role: Generated<'admin' | 'member' | 'viewer'>;
  jit_provisioning: Generated<boolean>;
  enabled: Generated<boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** Row type of `brigade.operator_keys`. */
export interface OperatorKeysTable {
  id: Generated<string>;
  key_hash: Buffer;
  source: 'generated' | 'environment';
  created_at: Timestamp;
}

/** Row type of `brigade.audit_events`; `seq`, `prev_hash` and `hash` are set by a trigger. */
export interface AuditEventsTable {
  tenant_id: string;
  seq: Generated<string>;
  id: Generated<string>;
  occurred_at: Timestamp;
  actor_kind: 'operator' | 'user' | 'system';
  actor_user_id: string | null;
  actor_key_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: 'success' | 'failure' | 'denied';
  reason: string | null;
  data: Json;
  prev_hash: Generated<Buffer>;
  hash: Generated<Buffer>;
}

/** Every Brigade table, keyed as Kysely sees them (schema-qualified). */
export interface DatabaseSchema {
  'brigade.tenants': TenantsTable;
  'brigade.users': UsersTable;
  'brigade.memberships': MembershipsTable;
  'brigade.api_keys': ApiKeysTable;
  'brigade.oidc_providers': OidcProvidersTable;
  'brigade.operator_keys': OperatorKeysTable;
  'brigade.audit_events': AuditEventsTable;
}
