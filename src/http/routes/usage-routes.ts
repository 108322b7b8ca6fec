import { z } from '@hono/zod-openapi';
import {
  type UsageDimension,
  type UsageReport,
  usageDimensions,
} from '../../domain/guards/usage-service.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, jsonResponse } from '../route-helpers.ts';

const groupBySchema = z
  .string()
  .max(200)
  .default('day')
  .transform((value, context) => {
    const parts = value
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part !== '');
    const unknown = parts.filter((part) => !usageDimensions.includes(part as UsageDimension));
    if (unknown.length > 0) {
      context.addIssue({
        code: 'custom',
        message: `Unknown dimension(s) ${unknown.join(', ')}; use ${usageDimensions.join(', ')}.`,
      });
      return z.NEVER;
    }
    return [...new Set(parts)] as UsageDimension[];
  })
  .openapi({
    type: 'string',
    description: `Comma-separated dimensions: ${usageDimensions.join(', ')} (day is tenant-local). Empty for totals only.`,
    example: 'day,model',
  });

const usageQuerySchema = z.strictObject({
  from: z.iso.datetime({ offset: true }).optional().openapi({
    description:
      'Start (inclusive); default 30 days before `to`. Must be before `to`, and at most 366 days before it (422 otherwise).',
  }),
  to: z.iso.datetime({ offset: true }).optional().openapi({
    description:
      'End (exclusive); default now. A report covers at most 366 days: a longer range is 422 (`errors[].path` `from`).',
  }),
  groupBy: groupBySchema,
  userId: z.uuid().optional().openapi({ description: "One user's usage (admins)." }),
  tenantId: z.uuid().optional().openapi({ description: 'The operator names the tenant.' }),
});

const totalsShape = {
  requests: z.int().openapi({
    description: 'Model calls (a call that retried or fell back to another route counts once).',
  }),
  errors: z.int().openapi({ description: 'Calls that did not succeed.' }),
  failedAttempts: z.int().openapi({
    description: 'Failed attempts before calls answered or failed: retries and fallbacks.',
  }),
  inputTokens: z.int(),
  outputTokens: z.int(),
  cachedTokens: z.int(),
  costUsd: z.number(),
};

const usageReportSchema = z
  .object({
    from: z.iso.datetime(),
    to: z.iso.datetime(),
    groupBy: z.array(z.enum(usageDimensions)),
    data: z.array(
      z.object({
        day: z.string().nullable().optional(),
        user: z.string().nullable().optional(),
        agent: z.string().nullable().optional(),
        key: z.string().nullable().optional(),
        route: z.string().nullable().optional().openapi({
          description:
            'The model route the call named (a fallback’s attempts count under it); null for `local` and a direct `<provider>:<model>`.',
        }),
        model: z.string().nullable().optional().openapi({
          description: 'The deployment that was called: `local` or `<provider>:<model>`.',
        }),
        provider: z.string().nullable().optional(),
        source: z.string().nullable().optional(),
        ...totalsShape,
      }),
    ),
    totals: z.object(totalsShape),
    truncated: z.boolean().openapi({
      description:
        'True when there were more than 10,000 groups: `data` lists the first 10,000 (in group order), `totals` count every record. Narrow the range or group by fewer dimensions.',
    }),
  })
  .openapi('UsageReport');

const getUsage = authedRoute({
  method: 'get',
  path: '/v1/usage',
  operationId: 'getUsage',
  tags: ['Usage'],
  summary: 'Model usage and cost: yours, or your tenant’s for admins, grouped as asked',
  request: { query: usageQuerySchema },
  responses: { 200: jsonResponse(usageReportSchema, 'The usage report.') },
});

const exportUsage = authedRoute({
  method: 'get',
  path: '/v1/usage/export',
  operationId: 'exportUsage',
  tags: ['Usage'],
  summary: 'The same report as CSV',
  request: { query: usageQuerySchema },
  responses: {
    200: {
      description: 'CSV with a header row; one row per group, then a totals row.',
      content: { 'text/csv': { schema: z.string() } },
    },
  },
});

function csvCell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  // Quote, and defuse spreadsheet formulas (a cell starting with = + - @ would be evaluated).
  const safe = /^[=+\-@\t\r]/.test(text) && typeof value === 'string' ? `'${text}` : text;
  return /[",\n\r']/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/** Renders a usage report as CSV (a header row, one row per group, then a totals row). */
export function toCsv(report: UsageReport): string {
  const columns = [
    ...report.groupBy,
    'requests',
    'errors',
    'inputTokens',
    'outputTokens',
    'cachedTokens',
    'costUsd',
    // Added last: a reader of the earlier columns by position is not misled.
    'failedAttempts',
  ] as const;
  const lines = [columns.join(',')];
  for (const row of report.data) {
    lines.push(columns.map((column) => csvCell(row[column as keyof typeof row])).join(','));
  }
  lines.push(
    columns
      .map((column, index) =>
        index === 0 && report.groupBy.length > 0
          ? 'total'
          : csvCell(report.totals[column as keyof typeof report.totals]),
      )
      .join(','),
  );
  return `${lines.join('\r\n')}\r\n`;
}

function toQuery(query: z.infer<typeof usageQuerySchema>) {
  return {
    from: query.from === undefined ? undefined : new Date(query.from),
    to: query.to === undefined ? undefined : new Date(query.to),
    groupBy: query.groupBy,
    userId: query.userId,
    tenantId: query.tenantId,
  };
}

/**
 * The report for the caller. The operator may name any tenant, so the tenant is looked up
 * first: an unknown one is 404 `tenant_not_found` (as for a tenant's own users), not a report
 * of zeros.
 */
async function reportFor(
  services: RouteServices,
  principal: Principal,
  query: z.infer<typeof usageQuerySchema>,
): Promise<UsageReport> {
  if (principal.kind === 'operator' && query.tenantId !== undefined)
    await services.identity.getTenant(principal, query.tenantId);
  return services.usage.report(principal, toQuery(query));
}

/** Registers `getUsage` and `exportUsage`. */
export function registerUsageRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(getUsage, async (context) => {
    const report = await reportFor(services, context.get('principal'), context.req.valid('query'));
    return context.json(
      {
        ...report,
        groupBy: [...report.groupBy],
        data: [...report.data],
        from: report.from.toISOString(),
        to: report.to.toISOString(),
      },
      200,
    );
  });
  app.openapi(exportUsage, async (context) => {
    const report = await reportFor(services, context.get('principal'), context.req.valid('query'));
    return context.body(toCsv(report), 200, {
      'content-type': 'text/csv; charset=utf-8',
      'content-disposition': 'attachment; filename="usage.csv"',
      // The CSV has no room for it: more than 10,000 groups, only the first are rows.
      'x-brigade-truncated': String(report.truncated),
    });
  });
}
