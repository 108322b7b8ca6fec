import type { NumericLimitKind, Policy } from '../domain/guards/policy-types.ts';
import type { Role } from '../domain/identity/permissions.ts';
import { createTtlCache } from './ttl-cache.ts';

/** Who a limit is checked for. */
export interface LimitSubject {
  readonly tenantId: string;
  readonly userId: string;
  readonly role: Role | undefined;
  readonly keyId?: string | null | undefined;
  readonly agentId?: string | null | undefined;
}

/** One policy limit binding a subject, and the counter key it is counted under. */
export interface BindingLimit {
  readonly policyId: string;
  readonly level: Policy['level'];
  readonly limit: number;
  /** What the limit counts against: `t:<tenant>`, `u:<user>`, `k:<key>` or `a:<agent>`. */
  readonly counterKey: string;
}

/** Looks up the rate and concurrency limits that bind a subject. */
export interface PolicyCache {
  binding(subject: LimitSubject, kind: NumericLimitKind): Promise<BindingLimit[]>;
  /** Drops a tenant's entry after a local policy change (every entry for a platform one). */
  invalidate(tenantId: string | null): void;
}

/**
 * Rate and concurrency limits are checked on every request, so their policies are cached per
 * tenant for `ttlMs` (a change applies within that time in every process). Budgets and quotas
 * never use this cache: they are read inside the statement that enforces them.
 */
export function createPolicyCache(options: {
  readonly load: (tenantId: string) => Promise<readonly Policy[]>;
  readonly ttlMs?: number;
}): PolicyCache {
  const cache = createTtlCache<readonly Policy[]>({ ttlMs: options.ttlMs ?? 2_000 });
  const policiesOf = (tenantId: string) => cache.get(tenantId, () => options.load(tenantId));
  return {
    async binding(subject, kind) {
      const policies = await policiesOf(subject.tenantId);
      const found: BindingLimit[] = [];
      for (const policy of policies) {
        const limit = policy.limits[kind];
        if (limit === undefined) continue;
        const counterKey = counterKeyOf(policy, subject);
        if (counterKey !== undefined)
          found.push({ policyId: policy.id, level: policy.level, limit, counterKey });
      }
      return found;
    },
    invalidate(tenantId) {
      cache.invalidate(tenantId ?? undefined);
    },
  };
}

function counterKeyOf(policy: Policy, subject: LimitSubject): string | undefined {
  switch (policy.level) {
    case 'platform':
      return `t:${subject.tenantId}`;
    case 'tenant':
      return policy.tenantId === subject.tenantId ? `t:${subject.tenantId}` : undefined;
    case 'role':
      return policy.role === subject.role ? `u:${subject.userId}` : undefined;
    case 'user':
      return policy.subjectId === subject.userId ? `u:${subject.userId}` : undefined;
    case 'api_key':
      return subject.keyId != null && policy.subjectId === subject.keyId
        ? `k:${subject.keyId}`
        : undefined;
    case 'agent':
      return subject.agentId != null && policy.subjectId === subject.agentId
        ? `a:${subject.agentId}`
        : undefined;
  }
}
