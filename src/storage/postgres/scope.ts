import { escapeLiteral } from 'pg';

/**
 * The row-level-security scope of one unit of work. Every field becomes a transaction-local
 * setting (`set_config(..., true)`, the function form of `SET LOCAL`), so a pooled connection
 * never carries it into the next transaction.
 */
export interface DatabaseScope {
  readonly tenantId?: string | undefined;
  readonly userId?: string | undefined;
  /** Platform operator: may read and create tenant records. */
  readonly operator?: boolean | undefined;
  /** Owner or admin of `tenantId` (or the operator acting in it, or the system). */
  readonly tenantAdmin?: boolean | undefined;
  /** Hex SHA-256 of a presented API key: reveals only that key's row. */
  readonly authKeyHash?: string | undefined;
  /** Issuer of a presented JWT: reveals only that issuer's enabled OIDC providers. */
  readonly authIssuer?: string | undefined;
  /** The run scheduler: sees the ids-only run queue of every tenant (no content). */
  readonly scheduler?: boolean | undefined;
  /**
   * Admission control: may read (never change) the ids-only run queue entries of `tenantId`,
   * to count its queued runs when a run is created.
   */
  readonly tenantQueue?: boolean | undefined;
  /**
   * The tool gate executing a call for `userId`: may read the tenant's shared credentials
   * (encrypted; decrypted only to authenticate that call).
   */
  readonly toolExecution?: boolean | undefined;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const hexPattern = /^[0-9a-f]{64}$/;

/** True for a syntactically valid UUID (any version). */
export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}

function checked(value: string | undefined, pattern: RegExp, name: string): string {
  if (value === undefined) return '';
  if (!pattern.test(value)) throw new Error(`invalid database scope: ${name}`);
  return value;
}

/**
 * Renders `BEGIN` plus the scope settings as one simple-protocol statement, so opening a
 * scoped transaction costs a single round trip. Values are validated first and also escaped.
 */
export function renderScopeStatement(scope: DatabaseScope): string {
  const settings = scopeSettings(scope);
  // Only non-empty settings are sent: set_config(…, true) is transaction-local and Brigade
  // never sets brigade.* at session level (test/session-settings.test.ts scans the source for
  // that), so every setting not named here is empty — "no scope" — in this transaction.
  const calls = settings.filter(([, value]) => value !== '').map(renderSetConfig);
  return calls.length === 0 ? 'BEGIN' : `BEGIN; SELECT ${calls.join(', ')}`;
}

/** `set_config(name, value, true)`: transaction-local, the value escaped. */
function renderSetConfig([name, value]: [string, string]): string {
  return `set_config('${name}', ${escapeLiteral(value)}, true)`;
}

function scopeSettings(scope: DatabaseScope): Array<[string, string]> {
  return [
    ['brigade.tenant_id', checked(scope.tenantId, uuidPattern, 'tenantId')],
    ['brigade.user_id', checked(scope.userId, uuidPattern, 'userId')],
    ['brigade.operator', scope.operator === true ? 'on' : ''],
    ['brigade.tenant_admin', scope.tenantAdmin === true ? 'on' : ''],
    ['brigade.auth_key_hash', checked(scope.authKeyHash, hexPattern, 'authKeyHash')],
    ['brigade.auth_issuer', scope.authIssuer ?? ''],
    ['brigade.scheduler', scope.scheduler === true ? 'on' : ''],
    ['brigade.tenant_queue', scope.tenantQueue === true ? 'on' : ''],
    ['brigade.tool_execution', scope.toolExecution === true ? 'on' : ''],
  ];
}

/**
 * Renders a statement that replaces the whole scope of the current transaction with `scope`:
 * every setting is sent, the empty ones as '' ("no scope"), so nothing of the previous scope
 * survives. For transactions that write for several scopes in turn (batched event writes).
 */
export function renderScopeSwitch(scope: DatabaseScope): string {
  return `SELECT ${scopeSettings(scope).map(renderSetConfig).join(', ')}`;
}
