import { ForbiddenError, NotFoundError, ValidationError } from '../errors.ts';
import type { Role } from '../identity/permissions.ts';
import { assertCan, type Principal, type UserPrincipal } from '../identity/principal.ts';
import {
  type ConfiguredSettings,
  configuredLimits,
  type MyLimitsReport,
  withConfiguredLimits,
} from './configured-limits.ts';
import type { MyLimits, Policy, PolicyInput, PolicyLevel, PolicyPatch } from './policy-types.ts';

/** Persistence of policies; every call runs in the principal's RLS scope. */
export interface PolicyStore {
  create(
    principal: Principal,
    input: Omit<PolicyInput, 'tenantId'> & {
      readonly tenantId: string | null;
      readonly managedBy: Policy['managedBy'];
    },
  ): Promise<Policy>;
  list(principal: Principal, tenantId: string | null): Promise<Policy[]>;
  get(principal: Principal, policyId: string): Promise<Policy | undefined>;
  update(principal: Principal, policy: Policy, patch: PolicyPatch): Promise<Policy | undefined>;
  delete(principal: Principal, policy: Policy): Promise<boolean>;
  /**
   * The user a user- or key-level policy binds (the key's user) with their role; null for an
   * agent; undefined when the subject does not exist in the tenant (as the principal may see it).
   */
  subjectUser(
    principal: Principal,
    subject: {
      readonly tenantId: string;
      readonly level: 'user' | 'api_key' | 'agent';
      readonly subjectId: string;
    },
  ): Promise<{ readonly userId: string; readonly role: Role } | null | undefined>;
  /** Whether a tenant exists (operator only). */
  tenantExists(principal: Principal, tenantId: string): Promise<boolean>;
  myLimits(principal: UserPrincipal): Promise<MyLimits>;
}

/** Policy use cases: operators and tenant admins manage; every user reads their own limits. */
export interface PolicyService {
  create(principal: Principal, input: PolicyInput): Promise<Policy>;
  list(principal: Principal, options: { tenantId?: string | undefined }): Promise<Policy[]>;
  get(principal: Principal, policyId: string): Promise<Policy>;
  update(principal: Principal, policyId: string, patch: PolicyPatch): Promise<Policy>;
  delete(principal: Principal, policyId: string): Promise<void>;
  /** The limits binding the caller: the policies' and the configuration's, tightest first. */
  myLimits(principal: Principal): Promise<MyLimitsReport>;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function policyNotFound(): NotFoundError {
  return new NotFoundError('policy_not_found', 'Policy not found.');
}

function hasAnyLimit(input: PolicyInput | PolicyPatch): boolean {
  const limits = input.limits;
  return limits !== undefined && Object.values(limits).some((value) => value !== undefined);
}

/** Checks the fields that only make sense for some levels, reporting every problem at once. */
function checkShape(input: PolicyInput, tenantId: string | null): void {
  const issues: { path: string; message: string }[] = [];
  const needsSubject: readonly PolicyLevel[] = ['user', 'api_key', 'agent'];
  if (input.level === 'role' && input.role === undefined)
    issues.push({ path: 'role', message: "A 'role' policy names the role it binds." });
  if (input.level !== 'role' && input.role !== undefined)
    issues.push({ path: 'role', message: "Only 'role' policies name a role." });
  if (needsSubject.includes(input.level) && input.subjectId === undefined)
    issues.push({ path: 'subjectId', message: `A '${input.level}' policy names its subject.` });
  if (!needsSubject.includes(input.level) && input.subjectId !== undefined)
    issues.push({ path: 'subjectId', message: `A '${input.level}' policy has no subject.` });
  if (input.level === 'platform' && tenantId !== null)
    issues.push({ path: 'tenantId', message: 'Platform policies belong to no tenant.' });
  if (input.level !== 'platform' && input.level !== 'role' && tenantId === null)
    issues.push({ path: 'tenantId', message: `A '${input.level}' policy needs a tenant.` });
  if (!hasAnyLimit(input))
    issues.push({ path: 'limits', message: 'A policy sets at least one limit.' });
  // Limits that cannot bind at a level are refused rather than silently ignored.
  if (input.level === 'agent' && input.limits.requestsPerMinute !== undefined)
    issues.push({
      path: 'limits.requestsPerMinute',
      message: 'API requests are not made by an agent; set this on a user, key, role or tenant.',
    });
  if (
    (input.level === 'agent' || input.level === 'api_key') &&
    input.limits.concurrentRuns !== undefined
  )
    issues.push({
      path: 'limits.concurrentRuns',
      message: 'Concurrent runs are capped per platform, tenant, role or user.',
    });
  const budget = input.limits.budget;
  if (budget?.windowHours !== undefined && budget.period !== 'rolling')
    issues.push({
      path: 'limits.budget.windowHours',
      message: 'Only rolling budgets have a window.',
    });
  if (issues.length > 0) throw new ValidationError(issues);
}

/** Creates the {@link PolicyService}. */
export function createPolicyService(options: {
  store: PolicyStore;
  /** Told after each change (the tenant id, or null for a platform policy), e.g. to drop caches. */
  onChange?: (tenantId: string | null) => void;
  /** The configuration's limit settings, reported by getMyLimits beside the policies'. */
  configured?: ConfiguredSettings;
}): PolicyService {
  const { store } = options;
  const configured = options.configured === undefined ? [] : configuredLimits(options.configured);
  const changed = (tenantId: string | null) => options.onChange?.(tenantId);

  async function load(principal: Principal, policyId: string): Promise<Policy> {
    if (principal.kind === 'user') assertCan(principal, 'policy:read');
    if (!uuidPattern.test(policyId)) throw policyNotFound();
    const policy = await store.get(principal, policyId);
    if (policy === undefined) throw policyNotFound();
    // Members may read the policies that bind them through getMyLimits, not this listing.
    if (
      principal.kind === 'user' &&
      policy.tenantId !== null &&
      policy.tenantId !== principal.tenantId
    )
      throw policyNotFound();
    return policy;
  }

  async function assertWritable(principal: Principal, policy: Policy): Promise<void> {
    if (principal.kind === 'operator') return;
    assertCan(principal, 'policy:manage');
    if (policy.tenantId === null || policy.managedBy === 'operator') {
      throw new ForbiddenError(
        'This policy was set by the platform operator; only the operator can change it.',
      );
    }
    await assertBindsBelow(principal, {
      level: policy.level,
      role: policy.role ?? undefined,
      subjectId: policy.subjectId ?? undefined,
      tenantId: policy.tenantId,
      existing: true,
    });
  }

  /**
   * Checks that the subject of a tenant's user-, key- or agent-level policy exists, and that an
   * admin writes no policy that binds an owner or an admin (a role-level policy of `owner` or
   * `admin`, a user or key policy on an owner or an admin, themselves included): only owners
   * (and the operator) limit owners and admins, so no admin lifts a limit set on an admin.
   * Tenant- and agent-level policies bind everyone alike and stay the admins' to manage.
   */
  async function assertBindsBelow(
    principal: Principal,
    target: {
      level: PolicyLevel;
      role?: Role | undefined;
      subjectId?: string | undefined;
      tenantId: string | null;
      /** A stored policy: its subject may be gone since (nothing then to protect). */
      existing?: boolean;
    },
  ): Promise<void> {
    const { level, subjectId, tenantId } = target;
    if (tenantId === null) return;
    const owner = principal.kind === 'operator' || principal.role === 'owner';
    if (level === 'role' && !owner && (target.role === 'owner' || target.role === 'admin'))
      throw bindsAbove(target.role === 'owner' ? 'owners' : 'admins');
    if (subjectId === undefined || (level !== 'user' && level !== 'api_key' && level !== 'agent'))
      return;
    const bound = await store.subjectUser(principal, { tenantId, level, subjectId });
    if (bound === undefined) {
      if (target.existing === true) return;
      throw new ValidationError([
        { path: 'subjectId', message: `No ${level.replace('_', ' ')} with this id in the tenant.` },
      ]);
    }
    if (bound === null || owner || principal.kind !== 'user') return;
    if (bound.role === 'owner') throw bindsAbove('an owner');
    if (bound.role === 'admin')
      throw bindsAbove(bound.userId === principal.userId ? 'yourself' : 'an admin');
  }

  return {
    async create(principal, input) {
      let tenantId: string | null;
      if (principal.kind === 'operator') {
        tenantId = input.tenantId ?? null;
        if (tenantId !== null && !(await store.tenantExists(principal, tenantId)))
          throw new NotFoundError('tenant_not_found', 'Tenant not found.');
      } else {
        assertCan(principal, 'policy:manage');
        if (input.tenantId !== undefined && input.tenantId !== principal.tenantId)
          throw new NotFoundError('tenant_not_found', 'Tenant not found.');
        if (input.level === 'platform')
          throw new ForbiddenError('Only the platform operator sets platform policies.');
        tenantId = principal.tenantId;
      }
      checkShape(input, tenantId);
      await assertBindsBelow(principal, { ...input, tenantId });
      const created = await store.create(principal, {
        ...input,
        tenantId,
        managedBy: principal.kind === 'operator' ? 'operator' : 'tenant',
      });
      changed(created.tenantId);
      return created;
    },
    async list(principal, { tenantId }) {
      if (principal.kind === 'operator') return store.list(principal, tenantId ?? null);
      assertCan(principal, 'policy:read');
      if (tenantId !== undefined && tenantId !== principal.tenantId)
        throw new NotFoundError('tenant_not_found', 'Tenant not found.');
      return store.list(principal, principal.tenantId);
    },
    get: load,
    async update(principal, policyId, patch) {
      const policy = await load(principal, policyId);
      await assertWritable(principal, policy);
      // Changed by the operator, a tenant's policy would stay the tenant's: its admins could
      // raise or remove the operator's limit again. The operator's limits are its own policies.
      if (principal.kind === 'operator' && policy.managedBy === 'tenant')
        throw new ForbiddenError(
          "This policy is the tenant's own: the operator does not change it. Create an operator policy on the same target instead (both apply; the tightest wins).",
        );
      if (patch.limits !== undefined) {
        checkShape(
          {
            level: policy.level,
            role: policy.role ?? undefined,
            subjectId: policy.subjectId ?? undefined,
            limits: patch.limits,
          },
          policy.tenantId,
        );
      }
      const updated = await store.update(principal, policy, patch);
      if (updated === undefined) throw policyNotFound();
      changed(updated.tenantId);
      return updated;
    },
    async delete(principal, policyId) {
      const policy = await load(principal, policyId);
      await assertWritable(principal, policy);
      if (!(await store.delete(principal, policy))) throw policyNotFound();
      changed(policy.tenantId);
    },
    async myLimits(principal) {
      if (principal.kind !== 'user') {
        throw new ForbiddenError('The operator key has no limits of its own; it has no tenant.');
      }
      return withConfiguredLimits(await store.myLimits(principal), {
        configured,
        usesKey: principal.keyId !== undefined && principal.keyId !== null,
      });
    },
  };
}

function bindsAbove(whom: string): ForbiddenError {
  return new ForbiddenError(`Only an owner can set, change or remove a policy that binds ${whom}.`);
}
