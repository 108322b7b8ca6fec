import { ForbiddenError, ValidationError } from '../errors.ts';
import { assertCan, can, type Principal } from '../identity/principal.ts';

/** Dimensions a usage report can be grouped by. */
export const usageDimensions = [
  'day',
  'user',
  'agent',
  'key',
  'route',
  'model',
  'provider',
  'source',
] as const;

/** A usage report dimension. */
export type UsageDimension = (typeof usageDimensions)[number];

/** What a usage report covers. */
export interface UsageQuery {
  readonly from?: Date | undefined;
  readonly to?: Date | undefined;
  readonly groupBy: readonly UsageDimension[];
  /** Only this user's usage (admins); members always see only their own. */
  readonly userId?: string | undefined;
  /** The operator names the tenant. */
  readonly tenantId?: string | undefined;
}

/** Totals of one group (or of the whole report). */
export interface UsageTotals {
  /** Model calls (a call that retried or fell back counts once). */
  readonly requests: number;
  /** Calls that did not succeed (failed, cancelled, orphaned). */
  readonly errors: number;
  /** Failed attempts before calls' answers or failures: retries and fallbacks. */
  readonly failedAttempts: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cachedTokens: number;
  readonly costUsd: number;
}

/** One row of a usage report: the group's dimension values and its totals. */
export type UsageRow = UsageTotals & Partial<Record<UsageDimension, string | null>>;

/** A usage report. */
export interface UsageReport {
  readonly from: Date;
  readonly to: Date;
  readonly groupBy: readonly UsageDimension[];
  readonly data: readonly UsageRow[];
  readonly totals: UsageTotals;
  /** More groups than a report holds (10,000): `data` has the first; `totals` count all. */
  readonly truncated: boolean;
}

/** Reads the usage ledger in a scope (RLS: users their own rows, admins their tenant's). */
export interface UsageStore {
  report(
    principal: Principal,
    query: {
      readonly tenantId: string;
      readonly from: Date;
      readonly to: Date;
      readonly groupBy: readonly UsageDimension[];
      readonly userId: string | undefined;
    },
  ): Promise<UsageReport>;
}

/** Usage reports: users see their own, admins their tenant's, the operator any tenant's. */
export interface UsageService {
  report(principal: Principal, query: UsageQuery): Promise<UsageReport>;
}

const maxRangeMs = 366 * 86_400_000;

/** Creates the {@link UsageService}. */
export function createUsageService(options: { store: UsageStore }): UsageService {
  return {
    async report(principal, query) {
      const to = query.to ?? new Date();
      const from = query.from ?? new Date(to.getTime() - 30 * 86_400_000);
      const issues: { path: string; message: string }[] = [];
      if (from >= to) issues.push({ path: 'from', message: 'from must be before to.' });
      if (to.getTime() - from.getTime() > maxRangeMs)
        issues.push({ path: 'from', message: 'A report covers at most 366 days.' });
      let tenantId: string;
      let userId = query.userId;
      if (principal.kind === 'operator') {
        if (query.tenantId === undefined)
          issues.push({ path: 'tenantId', message: 'The operator names the tenant to report on.' });
        tenantId = query.tenantId ?? '';
      } else {
        assertCan(principal, 'thread:read');
        if (query.tenantId !== undefined && query.tenantId !== principal.tenantId)
          throw new ForbiddenError('You can only see the usage of your own tenant.');
        tenantId = principal.tenantId;
        if (!can(principal, 'usage:read-any')) {
          if (userId !== undefined && userId !== principal.userId)
            throw new ForbiddenError('You can only see your own usage.');
          userId = principal.userId;
        }
      }
      if (issues.length > 0) throw new ValidationError(issues);
      return options.store.report(principal, {
        tenantId,
        from,
        to,
        groupBy: query.groupBy,
        userId,
      });
    },
  };
}
