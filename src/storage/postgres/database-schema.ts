import type { ColumnType, Generated } from 'kysely';
import type {
  BudgetAlertsTable,
  BudgetReservationsTable,
  LimitCountersTable,
  ModelRoutesTable,
  PoliciesTable,
  UsageRecordsTable,
  WebhookDeliveriesTable,
  WebhookEndpointsTable,
} from './database-schema-guards.ts';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json = ColumnType<unknown, string | undefined, string>;

/** Row type of `brigade.tenants`. */
export interface TenantsTable {
  id: Generated<string>;
  slug: string;
  name: string;
  status: Generated<'active' | 'suspended'>;
  time_zone: Generated<string>;
  capture_content: Generated<boolean>;
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
  /** The hash's encoding (1 before migration 0043, 2 since); set by the trigger. */
  hash_version: Generated<number>;
}

/** Row type of `brigade.agents`. */
export interface AgentsTable {
  tenant_id: string;
  id: Generated<string>;
  name: string;
  description: string | null;
  instructions: string;
  model: string;
  tools: string[];
  core_id: string;
  max_steps: number;
  run_timeout_ms: number;
  max_output_tokens: number;
  approval_required_tools: Generated<string[]>;
  consent_required_tools: Generated<string[]>;
  metadata: Json;
  created_by_user_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  degrade_at_percent: Generated<number | null>;
  degrade_model: Generated<string | null>;
  on_deadline: Generated<'fail' | 'partial'>;
  history_messages: Generated<number | null>;
}

/** Row type of `brigade.threads`. */
export interface ThreadsTable {
  tenant_id: string;
  id: Generated<string>;
  user_id: string;
  title: string | null;
  metadata: Json;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** Row type of `brigade.runs`. */
export interface RunsTable {
  tenant_id: string;
  id: Generated<string>;
  thread_id: string;
  user_id: string;
  agent_id: string;
  status: Generated<
    'queued' | 'running' | 'requires_action' | 'completed' | 'failed' | 'cancelled' | 'expired'
  >;
  strategy: 'reject' | 'enqueue' | 'interrupt' | 'rollback';
  error_code: string | null;
  error_message: string | null;
  /** A refusal's structured details (migration 0052). */
  error_details?: ColumnType<Record<string, unknown> | null, never, never>;
  input_tokens: Generated<number>;
  output_tokens: Generated<number>;
  step_count: Generated<number>;
  pending_action: Json | null;
  cancel_requested_at: Date | null;
  deadline_at: Date | null;
  created_at: Timestamp;
  started_at: Date | null;
  completed_at: Date | null;
  priority: Generated<'interactive' | 'batch'>;
  /** When a scheduler first claimed the run (copied from its queue entry when it starts). */
  first_claimed_at: Date | null;
  /** The API key that created the run (null for a JWT login); usage is attributed to it. */
  api_key_id: Generated<string | null>;
  incomplete_reason: Generated<string | null>;
  degraded: Generated<boolean>;
  /** The W3C traceparent of the request that created the run (migration 0045). */
  trace_parent: Generated<string | null>;
}

/** Row type of `brigade.messages`. */
export interface MessagesTable {
  tenant_id: string;
  id: Generated<string>;
  thread_id: string;
  user_id: string;
  seq: Generated<string>;
  run_id: string | null;
  role: 'user' | 'assistant' | 'tool' | 'system';
  content: Json;
  provenance: string;
  input_tokens: number | null;
  output_tokens: number | null;
  created_at: Timestamp;
}

/** Row type of `brigade.run_events`. */
export interface RunEventsTable {
  tenant_id: string;
  run_id: string;
  seq: number;
  user_id: string;
  type: string;
  data: Json;
  created_at: Timestamp;
}

/** Row type of `brigade.run_steps` (checkpointed model and tool call results). */
export interface RunStepsTable {
  tenant_id: string;
  run_id: string;
  step_key: string;
  user_id: string;
  kind: 'model' | 'tool';
  output: Json;
  created_at: Timestamp;
}

/** Row type of `brigade.run_queue` (ids only). */
export interface RunQueueTable {
  run_id: string;
  tenant_id: string;
  user_id: string;
  thread_id: string;
  state: Generated<'queued' | 'claimed' | 'parked'>;
  executor_id: string | null;
  heartbeat_at: Date | null;
  enqueued_at: Timestamp;
  priority: Generated<'interactive' | 'batch'>;
  /** Set by the first claim; kept by takeovers and requeues. */
  first_claimed_at: Date | null;
  /** A parked run: when its pending approval expires (the expiry sweep's cue). */
  wake_at: Generated<Date | null>;
}

/** Row type of `brigade.approvals`. */
export interface ApprovalsTable {
  tenant_id: string;
  id: Generated<string>;
  user_id: string;
  thread_id: string;
  run_id: string;
  tool_call_id: string;
  tool_name: string;
  arguments: Json;
  arguments_hash: string;
  reason: string;
  status: Generated<'pending' | 'approved' | 'rejected' | 'expired'>;
  decision: 'approve' | 'reject' | 'edit' | null;
  edited_arguments: Json | null;
  decision_reason: string | null;
  decided_at: Date | null;
  expires_at: Date;
  created_at: Timestamp;
  /** The tool's policy version when the approval was requested (migration 0051). */
  policy_version: string | null;
}

/** Row type of `brigade.audit_heads` (the last sequence number and hash per tenant). */
export interface AuditHeadsTable {
  tenant_id: string;
  seq: string;
  hash: Buffer;
}

/** Row type of `brigade.audit_checkpoints` (signed (seq, hash) points of a tenant's chain). */
export interface AuditCheckpointsTable {
  tenant_id: string;
  seq: ColumnType<string, string | number, never>;
  hash: Buffer;
  signed_at: Timestamp;
  key_id: string;
  signature: Buffer;
}

/** Row type of `brigade.consents` (per-user consent records). */
export interface ConsentsTable {
  tenant_id: string;
  id: Generated<string>;
  user_id: string;
  purpose: string;
  scope: Generated<string>;
  version: string;
  status: Generated<'granted' | 'revoked'>;
  granted_at: Timestamp;
  granted_by_kind: 'user' | 'operator';
  granted_by_user_id: string | null;
  revoked_at: Date | null;
  revoked_by_kind: 'user' | 'operator' | null;
  revoked_by_user_id: string | null;
}

/** Row type of `brigade.memories` (a core's thread and long-term memory of one user). */
export interface MemoriesTable {
  tenant_id: string;
  id: Generated<string>;
  user_id: string;
  /** Null for the user's long-term memory. */
  thread_id: string | null;
  key: string;
  value: Json;
  /** The run that last wrote the entry. */
  run_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
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
  'brigade.audit_heads': AuditHeadsTable;
  'brigade.audit_checkpoints': AuditCheckpointsTable;
  'brigade.consents': ConsentsTable;
  'brigade.memories': MemoriesTable;
  'brigade.agents': AgentsTable;
  'brigade.threads': ThreadsTable;
  'brigade.runs': RunsTable;
  'brigade.messages': MessagesTable;
  'brigade.run_events': RunEventsTable;
  'brigade.run_steps': RunStepsTable;
  'brigade.run_queue': RunQueueTable;
  'brigade.approvals': ApprovalsTable;
  'brigade.policies': PoliciesTable;
  'brigade.limit_counters': LimitCountersTable;
  'brigade.budget_reservations': BudgetReservationsTable;
  'brigade.usage_records': UsageRecordsTable;
  'brigade.model_routes': ModelRoutesTable;
  'brigade.budget_alerts': BudgetAlertsTable;
  'brigade.webhook_endpoints': WebhookEndpointsTable;
  'brigade.webhook_deliveries': WebhookDeliveriesTable;
}

export type {
  BudgetAlertsTable,
  BudgetReservationsTable,
  LimitCountersTable,
  ModelRoutesTable,
  PoliciesTable,
  UsageRecordsTable,
  WebhookDeliveriesTable,
  WebhookEndpointsTable,
};
