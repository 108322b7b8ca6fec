import { z } from '@hono/zod-openapi';
import { stream } from 'hono/streaming';
import {
  type ExportBatch,
  type ExportSection,
  exportSections,
} from '../../domain/identity/data-rights-service.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import type { ErrorLogger } from '../error-response.ts';
import { authedRoute, idParam, jsonResponse, problemResponse } from '../route-helpers.ts';

const item = z.record(z.string(), z.unknown());

const exportSchema = z
  .object({
    format: z.literal('brigade-user-export/v1'),
    exportedAt: z.iso.datetime(),
    tenantId: z.uuid(),
    userId: z.uuid(),
    profile: z.array(item).openapi({ description: 'The user and their role (one item).' }),
    apiKeys: z.array(item).openapi({ description: 'Key metadata; never a secret or its hash.' }),
    consents: z.array(item),
    credentials: z
      .array(item)
      .openapi({ description: 'Personal credentials: names and kinds, never secret material.' }),
    threads: z.array(item),
    messages: z.array(item),
    runs: z.array(item),
    runSteps: z.array(item),
    approvals: z.array(item),
    memories: z.array(item).openapi({
      description: 'What agents remember about the user: thread and long-term memory.',
    }),
    usageRecords: z.array(item),
    spans: z.array(item).openapi({
      description:
        'The stored trace spans of their calls (with content capture on, prompts and answers).',
    }),
    auditEvents: z
      .array(item)
      .openapi({ description: 'Audit events the user caused or that concern them.' }),
    complete: z.literal(true).openapi({
      description:
        'Written last: a document without it was cut off (the connection or the server failed).',
    }),
  })
  .openapi('UserDataExport');

const exportMyData = authedRoute({
  method: 'get',
  path: '/v1/me/export',
  operationId: 'exportMyData',
  tags: ['Data rights'],
  summary: "Download everything Brigade holds of the caller's own (audited)",
  description:
    'A JSON document, streamed section by section; secrets (key hashes, credential material) are never included. Each section is read in the caller’s own database scope.',
  responses: { 200: jsonResponse(exportSchema, 'The export.') },
});

const deleteUser = authedRoute({
  method: 'delete',
  path: '/v1/tenants/{tenantId}/users/{userId}',
  operationId: 'deleteUser',
  tags: ['Data rights'],
  summary:
    'Delete a user and everything that is theirs (yourself; admins: members and viewers; owners: anyone but the last active owner)',
  description:
    'Cancels the user’s runs, then deletes their threads, messages, runs, keys, consents, personal credentials, spans, cached answers and the policies that bind them. Usage records and audit events are kept (ids only, no content). Audited.',
  request: {
    params: z.object({ tenantId: idParam('tenantId'), userId: idParam('userId') }),
    query: z.strictObject({
      reason: z
        .string()
        .min(1)
        .max(500)
        .optional()
        .openapi({ description: 'Why (recorded in the audit log).' }),
    }),
  },
  responses: {
    204: { description: 'Deleted.' },
    409: problemResponse('The user is the tenant’s last active owner.'),
    503: problemResponse(
      'The response cache could not be cleared, or the server is overloaded; nothing was deleted (`service_unavailable`).',
      { retry: true },
    ),
  },
});

/**
 * Writes the export as one JSON document, a section at a time: every section, in order, an
 * empty one as `[]`. Stops reading the database when the client has gone (`aborted`).
 */
async function writeExport(
  output: { write(text: string): Promise<unknown>; readonly aborted: boolean },
  head: Readonly<Record<string, unknown>>,
  batches: AsyncIterable<ExportBatch>,
): Promise<void> {
  await output.write(JSON.stringify(head).slice(0, -1));
  let opened = -1;
  let first = true;
  const openThrough = async (section: ExportSection | undefined) => {
    const last =
      section === undefined ? exportSections.length - 1 : exportSections.indexOf(section);
    while (opened < last) {
      opened += 1;
      await output.write(`${opened === 0 ? '' : ']'},${JSON.stringify(exportSections[opened])}:[`);
      first = true;
    }
  };
  for await (const batch of batches) {
    if (output.aborted) return;
    await openThrough(batch.section);
    for (const entry of batch.items) {
      await output.write(`${first ? '' : ','}${JSON.stringify(entry)}`);
      first = false;
    }
  }
  await openThrough(undefined);
  await output.write('],"complete":true}');
}

/** Registers the data subject's operations: export and erasure. */
export function registerDataRightsRoutes(
  app: BrigadeApp,
  services: RouteServices,
  logger: ErrorLogger,
): void {
  app.openapi(exportMyData, async (context) => {
    const principal = context.get('principal');
    const batches = await services.dataRights.exportOwnData(principal);
    if (principal.kind !== 'user') throw new Error('unreachable: exports are users’');
    const head = {
      format: 'brigade-user-export/v1',
      exportedAt: new Date().toISOString(),
      tenantId: principal.tenantId,
      userId: principal.userId,
    };
    context.header('Content-Type', 'application/json; charset=utf-8');
    context.header(
      'Content-Disposition',
      `attachment; filename="brigade-export-${principal.userId}.json"`,
    );
    context.header('Cache-Control', 'no-store');
    // A stream is not one of the typed JSON responses the route declares (as for SSE).
    return stream(
      context,
      (output) => writeExport(output, head, batches),
      // Headers are sent: the client sees a document without `complete`, the log the cause.
      async (error) => logger.error({ err: { message: error.message } }, 'data export failed'),
    ) as never;
  });
  app.openapi(deleteUser, async (context) => {
    const { reason } = context.req.valid('query');
    await services.dataRights.deleteUser(
      context.get('principal'),
      context.req.valid('param'),
      reason,
    );
    return context.body(null, 204);
  });
}
