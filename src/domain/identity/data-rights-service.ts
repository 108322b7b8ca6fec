import { AppError, ConflictError, ForbiddenError, NotFoundError } from '../errors.ts';
import type { User } from './identity-types.ts';
import { isRoleAtLeast } from './permissions.ts';
import { assertCan, can, type Principal, type UserPrincipal } from './principal.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The sections of a data export, in the order they are written. */
export const exportSections = [
  'profile',
  'apiKeys',
  'consents',
  'credentials',
  'threads',
  'messages',
  'runs',
  'runSteps',
  'approvals',
  'memories',
  'usageRecords',
  'spans',
  'auditEvents',
] as const;

/** One section of a data export. */
export type ExportSection = (typeof exportSections)[number];

/** A batch of one section's items, in order; a section may come in several batches. */
export interface ExportBatch {
  readonly section: ExportSection;
  readonly items: readonly Readonly<Record<string, unknown>>[];
}

/** Identifies the user to erase and why. */
export interface ErasureRequest {
  readonly principal: Principal;
  readonly tenantId: string;
  readonly userId: string;
  readonly reason: string | undefined;
  /** Throws when the principal may not erase `target` (given the tenant's active owners). */
  readonly check: (target: User, activeOwners: number) => void;
}

/** Persistence behind the data rights (exports and erasure). */
export interface DataRightsStore {
  /** The caller's own data, section by section, each batch its own short scoped read. */
  exportBatches(principal: UserPrincipal): AsyncIterable<ExportBatch>;
  /** Audits an export that is about to be sent. */
  recordExport(principal: UserPrincipal): Promise<void>;
  /** Runs the request's check without changing anything; undefined when no such user. */
  checkErasure(request: ErasureRequest): Promise<User | undefined>;
  /**
   * First phase of an erasure: checks again (under locks), disables the user (no new sign-in,
   * no new run) and audits the request; undefined when no such user.
   */
  beginErasure(request: ErasureRequest): Promise<User | undefined>;
  /**
   * Second phase: deletes the user and everything that is theirs, and audits it (without
   * checking again: beginErasure decided); false when the user is already gone.
   */
  erase(request: ErasureRequest): Promise<boolean>;
}

/** Per-user data export and erasure (the data subject's rights). */
export interface DataRightsService {
  /** The caller's own data; audited before the first byte is sent. */
  exportOwnData(principal: Principal): Promise<AsyncIterable<ExportBatch>>;
  /** Deletes a user and their data (see docs/observability.md, "Data export and erasure"). */
  deleteUser(
    principal: Principal,
    target: { readonly tenantId: string; readonly userId: string },
    reason?: string,
  ): Promise<void>;
}

function userNotFound(): NotFoundError {
  return new NotFoundError('user_not_found', 'User not found.');
}

/**
 * Who may erase whom: a user themselves (scope `account:delete-own`), an admin the members and
 * viewers of the tenant, an owner (or the operator) anyone — but never the tenant's last
 * active owner, who must hand the tenant to another owner first.
 */
function erasureCheck(principal: Principal, self: boolean) {
  return (target: User, activeOwners: number) => {
    if (!self && principal.kind === 'user') {
      const outranks = target.role === 'member' || target.role === 'viewer';
      if (!outranks && !can(principal, 'user:manage-owners')) {
        throw new ForbiddenError('Only an owner can delete an owner or an admin.');
      }
      if (!isRoleAtLeast(principal.role, target.role)) {
        throw new ForbiddenError('You cannot delete a user with a higher role.');
      }
    }
    if (target.role === 'owner' && target.status === 'active' && activeOwners <= 1) {
      throw new ConflictError(
        'A tenant must keep at least one active owner: make another user an owner first.',
      );
    }
  };
}

/** Creates the {@link DataRightsService}. */
export function createDataRightsService(options: {
  readonly store: DataRightsStore;
  /** Cancels the user's active runs (as disabling a user does). */
  readonly endAccess: (subject: {
    readonly tenantId: string;
    readonly userId: string;
    readonly reason: string;
  }) => Promise<unknown>;
  /** Drops the user's cached model answers (and the tenant's shared ones); throws on failure. */
  readonly purgeCache: (subject: {
    readonly tenantId: string;
    readonly userId: string;
  }) => Promise<unknown>;
}): DataRightsService {
  const { store } = options;
  /** Erasures this process is running, by `<tenant>/<user>`. */
  const erasures = new Map<string, Promise<void>>();
  return {
    async exportOwnData(principal) {
      if (principal.kind !== 'user') {
        throw new ForbiddenError(
          'A data export is the signed-in user’s own; the operator has no user data to export.',
        );
      }
      assertCan(principal, 'account:export-own');
      await store.recordExport(principal);
      return store.exportBatches(principal);
    },
    async deleteUser(principal, target, reason) {
      // UUIDs in any case name the same row: compare them in one (an upper-case spelling of
      // one's own id must not pass as someone else's, which needs other scopes).
      const tenantId = target.tenantId.toLowerCase();
      const userId = target.userId.toLowerCase();
      if (!uuidPattern.test(tenantId))
        throw new NotFoundError('tenant_not_found', 'Tenant not found.');
      if (principal.kind === 'user' && principal.tenantId !== tenantId) {
        throw new NotFoundError('tenant_not_found', 'Tenant not found.');
      }
      if (!uuidPattern.test(userId)) throw userNotFound();
      const self = principal.kind === 'user' && principal.userId === userId;
      if (self) assertCan(principal, 'account:delete-own');
      else if (!can(principal, 'user:manage')) {
        if (!can(principal, 'user:read')) throw userNotFound();
        assertCan(principal, 'user:manage');
      }
      const request = { principal, tenantId, userId, reason, check: erasureCheck(principal, self) };
      // A second request for an erasure this process is running waits for it, then finds no
      // one: one erasure, one `user.deletion_started`, one 204.
      const key = `${tenantId}/${userId}`;
      const running = erasures.get(key);
      if (running !== undefined) {
        await running.catch(() => undefined);
        throw userNotFound();
      }
      const erasure = erase(request);
      erasures.set(key, erasure);
      try {
        await erasure;
      } finally {
        erasures.delete(key);
      }
    },
  };

  async function erase(request: ErasureRequest): Promise<void> {
    const { tenantId, userId } = request;
    if ((await store.checkErasure(request)) === undefined) throw userNotFound();
    // Before anything changes, so a failure here (Redis down) leaves the user as they were,
    // able to ask again (a user who erases themselves could not, once disabled).
    await options.purgeCache({ tenantId, userId }).catch((error: unknown) => {
      throw new AppError(
        'service_unavailable',
        'The response cache could not be cleared, so nothing was deleted; try again.',
        { cause: error },
      );
    });
    if ((await store.beginErasure(request)) === undefined) throw userNotFound();
    await options.endAccess({ tenantId, userId, reason: 'the user was deleted' });
    // Erased meanwhile by another process: that request answered 204, this one finds no one.
    if (!(await store.erase(request))) throw userNotFound();
    // An answer a call in flight stored after the first purge goes too (best effort: no one
    // can reach it any more, and it expires with its route's TTL).
    await options.purgeCache({ tenantId, userId }).catch(() => undefined);
  }
}
