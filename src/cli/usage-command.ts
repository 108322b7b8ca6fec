import { ValidationError } from '../domain/errors.ts';
import {
  createUsageService,
  type UsageDimension,
  usageDimensions,
} from '../domain/guards/usage-service.ts';
import { toCsv } from '../http/routes/usage-routes.ts';
import { createUsageStore } from '../storage/guards/usage-store.ts';
import type { Database } from '../storage/postgres/database.ts';
import { type CliIo, printTable, UsageError } from './cli-output.ts';

/** Reads a required string flag. */
export function required(value: string | boolean | undefined, name: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new UsageError(`missing --${name}`);
  return value;
}

function date(value: string | boolean | undefined, name: string): Date | undefined {
  if (value === undefined) return undefined;
  const parsed = typeof value === 'string' ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(parsed.getTime())) throw new UsageError(`--${name} must be an ISO date or time`);
  return parsed;
}

/**
 * `brigade usage report`: a tenant's model usage and cost, as a table, JSON or CSV — the same
 * report as `getUsage` / `exportUsage`, read as the operator.
 */
export async function usageReport(options: {
  readonly database: Database;
  readonly tenantId: string;
  /** `--user`, resolved to an id (the flag takes an id or an e-mail). */
  readonly userId: string | undefined;
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
  readonly io: CliIo;
}): Promise<void> {
  const { flags, io } = options;
  const groupBy = (typeof flags['group-by'] === 'string' ? flags['group-by'] : 'day')
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  const unknown = groupBy.filter((part) => !usageDimensions.includes(part as UsageDimension));
  if (unknown.length > 0)
    throw new UsageError(
      `--group-by: unknown ${unknown.join(', ')} (use ${usageDimensions.join(', ')})`,
    );
  const report = await createUsageService({ store: createUsageStore(options.database) })
    .report(
      { kind: 'operator' },
      {
        tenantId: options.tenantId,
        from: date(flags['from'], 'from'),
        to: date(flags['to'], 'to'),
        groupBy: groupBy as UsageDimension[],
        userId: options.userId,
      },
    )
    .catch((error: unknown) => {
      // The report's own checks (--from before --to, at most 366 days) are about the command
      // line: exit 2, like every other invalid flag.
      if (!(error instanceof ValidationError)) throw error;
      throw new UsageError(
        error.issues.map((issue) => `--${issue.path}: ${issue.message}`).join('; '),
      );
    });
  if (report.truncated)
    io.err(
      'brigade: more than 10,000 groups: only the first are listed (the totals count all); narrow --from/--to or --group-by',
    );
  if (flags['csv'] === true) {
    io.out(toCsv(report).trimEnd());
    return;
  }
  if (flags['json'] === true) {
    io.out(JSON.stringify(report));
    return;
  }
  const columns = [
    ...report.groupBy,
    'requests',
    'errors',
    'inputTokens',
    'outputTokens',
    'costUsd',
    'failedAttempts',
  ];
  const totals: Record<string, unknown> = { ...report.totals };
  if (report.groupBy[0] !== undefined) totals[report.groupBy[0]] = 'total';
  const rows: Record<string, unknown>[] = report.data.map((row) => ({ ...row }));
  printTable(io, [...rows, totals], columns);
}
