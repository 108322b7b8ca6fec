import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json = ColumnType<unknown, string | undefined, string>;

// Row types of the guard-rail, gateway and webhook tables (migrations 0004, 0006, 0010);
// database-schema.ts gathers every table into one DatabaseSchema.

/** Row type of `brigade.policies`. `limits` holds the stored limits (budget in nano-USD). */
export interface PoliciesTable {
  id: Generated<string>;
  tenant_id: string | null;
  level: 'platform' | 'tenant' | 'role' | 'user' | 'api_key' | 'agent';
  role: 'owner' | 'admin' | 'member' | 'viewer' | null;
  subject_id: string | null;
  name: string | null;
  limits: Json;
  managed_by: 'operator' | 'tenant';
  created_by_user_id: string | null;
  version: Generated<number>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** Row type of `brigade.limit_counters` (bigints arrive as strings). */
export interface LimitCountersTable {
  tenant_id: string;
  policy_id: string;
  kind: 'budget' | 'runs' | 'tool_calls';
  subject_id: string;
  period_start: Timestamp;
  limit_value: ColumnType<string, string | number, string | number>;
  used: ColumnType<string, string | number | undefined, string | number>;
  reserved: ColumnType<string, string | number | undefined, string | number>;
  /** The user whose calls it counts (role, user and API-key policies); null: tenant-wide. */
  user_id: ColumnType<string | null, never, never>;
  updated_at: Timestamp;
}

/** Row type of `brigade.budget_reservations`. */
export interface BudgetReservationsTable {
  id: Generated<string>;
  tenant_id: string;
  user_id: string;
  run_id: string | null;
  amount: ColumnType<string, string | number, string | number>;
  counters: Json;
  status: Generated<'reserved' | 'settled' | 'released' | 'orphaned'>;
  cost: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  expires_at: Timestamp;
  created_at: Timestamp;
  resolved_at: Date | null;
}

/** Row type of `brigade.usage_records` (the usage ledger; append-only). */
export interface UsageRecordsTable {
  tenant_id: string;
  id: Generated<string>;
  user_id: string;
  key_id: string | null;
  agent_id: string | null;
  run_id: string | null;
  source: 'run' | 'api';
  route: string | null;
  provider: string;
  model: string;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  estimated: boolean;
  cost: ColumnType<string, string | number, string | number>;
  latency_ms: number | null;
  ttft_ms: number | null;
  status: 'ok' | 'error' | 'cancelled' | 'orphaned';
  error_code: string | null;
  /** `call`: the call's own record; `attempt`: a failed attempt before it (migration 0058). */
  kind: Generated<'call' | 'attempt'>;
  /** A call's deployments tried (its answering one included); null on attempts and old rows. */
  attempts: number | null;
  reservation_id: string | null;
  created_at: Timestamp;
}

/** Row type of `brigade.model_routes` (`definition` is a validated ModelRouteDefinition). */
export interface ModelRoutesTable {
  tenant_id: string;
  id: Generated<string>;
  name: string;
  definition: Json;
  version: Generated<number>;
  created_by_user_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** Row type of `brigade.budget_alerts` (a threshold a budget crossed, once per period). */
export interface BudgetAlertsTable {
  tenant_id: string;
  id: Generated<string>;
  policy_id: string;
  subject_id: string;
  period_start: Timestamp;
  threshold: 50 | 80 | 100;
  used: ColumnType<string, string | number, string | number>;
  limit_value: ColumnType<string, string | number, string | number>;
  created_at: Timestamp;
  announced_at: Date | null;
}

/** Row type of `brigade.webhook_endpoints`. */
export interface WebhookEndpointsTable {
  tenant_id: string;
  id: Generated<string>;
  url: string;
  events: string[];
  /** Plain only when the process had no vault key (migration 0026). */
  secret: string | null;
  sealed_secret: Buffer | null;
  description: string | null;
  enabled: Generated<boolean>;
  created_by_user_id: string | null;
  created_at: Timestamp;
}

/** Row type of `brigade.webhook_deliveries` (the outbox). */
export interface WebhookDeliveriesTable {
  tenant_id: string;
  id: Generated<string>;
  endpoint_id: string;
  event_type: string;
  payload: Json;
  status: Generated<'pending' | 'delivered' | 'failed'>;
  attempts: Generated<number>;
  next_attempt_at: Timestamp;
  last_status: number | null;
  last_error: string | null;
  created_at: Timestamp;
  delivered_at: Date | null;
}
