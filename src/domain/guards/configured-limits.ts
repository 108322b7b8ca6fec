import type { MyLimits, NumericLimitKind, PolicyLevel } from './policy-types.ts';

/** What a configured limit counts: each API key, each user, or the whole tenant. */
export type ConfiguredScope = 'key' | 'user' | 'tenant';

/**
 * A limit the server's configuration sets for every caller (no policy needed), enforced beside
 * the policies: `limits.requestsPerMinute.*`, `runs.maxConcurrentPer*`.
 */
export interface ConfiguredLimit {
  readonly kind: NumericLimitKind;
  readonly scope: ConfiguredScope;
  readonly limit: number;
  /** The configuration key that sets it, e.g. `limits.requestsPerMinute.key`. */
  readonly setting: string;
}

/** One limit getMyLimits reports: a policy's, or the configuration's. */
export type ReportedLimit =
  | {
      readonly source: 'policy';
      readonly limit: number;
      readonly policyId: string;
      readonly level: PolicyLevel;
    }
  | {
      readonly source: 'config';
      readonly limit: number;
      readonly policyId: null;
      readonly level: null;
      readonly scope: ConfiguredScope;
      readonly setting: string;
    };

/** {@link MyLimits} with the configuration's limits among the tightest of each kind. */
export interface MyLimitsReport extends Omit<MyLimits, 'limits'> {
  readonly limits: Partial<Record<NumericLimitKind, ReportedLimit>>;
}

/** The configuration's settings that limit every caller (`limits`, `runs`). */
export interface ConfiguredSettings {
  readonly requestsPerMinute: {
    readonly key: number;
    readonly user: number;
    readonly tenant: number;
  };
  readonly runs: {
    readonly maxConcurrentPerUser: number;
    readonly maxConcurrentPerTenant: number;
  };
}

/**
 * The configuration's limits from its settings (a concurrency cap of 0 means none): what the
 * request limiter and the run scheduler enforce whatever the policies say.
 */
export function configuredLimits(settings: ConfiguredSettings): ConfiguredLimit[] {
  const rpm = settings.requestsPerMinute;
  const runs = settings.runs;
  const limits: ConfiguredLimit[] = [
    {
      kind: 'requestsPerMinute',
      scope: 'key',
      limit: rpm.key,
      setting: 'limits.requestsPerMinute.key',
    },
    {
      kind: 'requestsPerMinute',
      scope: 'user',
      limit: rpm.user,
      setting: 'limits.requestsPerMinute.user',
    },
    {
      kind: 'requestsPerMinute',
      scope: 'tenant',
      limit: rpm.tenant,
      setting: 'limits.requestsPerMinute.tenant',
    },
    {
      kind: 'concurrentRuns',
      scope: 'user',
      limit: runs.maxConcurrentPerUser,
      setting: 'runs.maxConcurrentPerUser',
    },
    {
      kind: 'concurrentRuns',
      scope: 'tenant',
      limit: runs.maxConcurrentPerTenant,
      setting: 'runs.maxConcurrentPerTenant',
    },
  ];
  return limits.filter((entry) => entry.limit > 0);
}

/**
 * The tightest limit of each kind among the policies' (`mine`) and the configuration's that
 * bind the caller (the per-key ones only for a caller using an API key), so what getMyLimits
 * reports is what is enforced. A tie keeps the policy, the more specific answer.
 */
export function withConfiguredLimits(
  mine: MyLimits,
  context: { readonly configured: readonly ConfiguredLimit[]; readonly usesKey: boolean },
): MyLimitsReport {
  const limits: Partial<Record<NumericLimitKind, ReportedLimit>> = {};
  for (const [kind, effective] of Object.entries(mine.limits)) {
    if (effective !== undefined)
      limits[kind as NumericLimitKind] = { source: 'policy', ...effective };
  }
  for (const entry of context.configured) {
    if (entry.scope === 'key' && !context.usesKey) continue;
    const current = limits[entry.kind];
    if (current !== undefined && current.limit <= entry.limit) continue;
    limits[entry.kind] = {
      source: 'config',
      limit: entry.limit,
      policyId: null,
      level: null,
      scope: entry.scope,
      setting: entry.setting,
    };
  }
  return { ...mine, limits };
}
