import { z } from '@hono/zod-openapi';
import type { ValidationIssue } from '../../domain/errors.ts';
import type { HttpToolDefinition } from '../../domain/tools/tool-types.ts';
import { toolRisks } from '../../domain/tools/tool-types.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';
import { problemSchema } from '../schemas.ts';
import { definitionFields, toolBody, toolResponse, toResponse } from './tool-routes.ts';

const operationId = z.string().min(1).max(200);
const auth = definitionFields.auth.unwrap().shape;

const importBody = z
  .strictObject({
    document: z.record(z.string(), z.unknown()).openapi({
      description: 'The OpenAPI 3.0 or 3.1 document, as a JSON object (at most 1 MiB of JSON).',
    }),
    baseUrl: z.string().max(2_048).optional().openapi({
      description:
        "Replaces the document's server URL; required when `servers[0].url` is relative or missing.",
      example: 'https://api.example.com/v1',
    }),
    operations: z.array(operationId).min(1).max(200).optional().openapi({
      description:
        'The operationIds to import; absent: every operation (unsupported ones are skipped). A named operation that cannot be imported fails the import.',
    }),
    namePrefix: z
      .string()
      .regex(/^[a-z][a-z0-9_]{0,31}$/)
      .optional()
      .openapi({ description: 'Prepended as is to every tool name.', example: 'petstore_' }),
    risk: z.enum(toolRisks).optional().openapi({
      description:
        'Risk of every tool; absent: GET → read, POST/PUT/PATCH → write, DELETE → sensitive.',
    }),
    riskByOperation: z.record(operationId, z.enum(toolRisks)).optional().openapi({
      description: 'Risk per operationId; wins over `risk`.',
    }),
    auth: z
      .strictObject({
        credential: auth.credential,
        scheme: auth.scheme.optional(),
        headerName: auth.headerName,
      })
      .optional()
      .openapi({
        description:
          "The credential every tool presents. Without `scheme`, each operation's security is mapped from the document's securitySchemes (http bearer → bearer, http basic → basic, apiKey in a header → header, oauth2/openIdConnect → bearer).",
      }),
    allowedRoles: definitionFields.allowedRoles,
    dryRun: z.boolean().default(false).openapi({
      description: 'Check and return what would be created; write nothing (200).',
    }),
  })
  .openapi('ImportOpenApiTools');

const skipped = z
  .object({
    operationId: z.string().nullable(),
    method: z.string(),
    path: z.string(),
    reason: z.string(),
  })
  .openapi('SkippedOperation');

const importProblem = problemSchema
  .extend({
    errors: z
      .array(
        z.object({
          path: z.string(),
          message: z.string(),
          operationId: z.string().nullable().optional(),
          code: z.string().optional(),
        }),
      )
      .optional(),
    skipped: z
      .array(skipped)
      .optional()
      .openapi({ description: 'The operations the import would skip.' }),
  })
  .openapi('ImportProblem');

const importResult = z
  .object({
    dryRun: z.boolean(),
    tools: z.array(toolResponse),
    skipped: z.array(skipped),
  })
  .openapi('OpenApiImportResult');

const importOpenApiTools = authedRoute({
  method: 'post',
  path: '/v1/tools/import-openapi',
  operationId: 'importOpenApiTools',
  tags: ['Tools'],
  summary: 'Create HTTP tools from the operations of an OpenAPI document (owners and admins)',
  description:
    'All or nothing: every generated tool passes the checks of createTool; if any selected operation fails, nothing is written and the 422 lists each (`errors[]` with `operationId` and `code`).',
  request: { body: jsonBody(importBody) },
  responses: {
    200: jsonResponse(importResult, 'Dry run: the tools that would be created.'),
    201: jsonResponse(importResult, 'The tools created and the operations skipped.'),
    422: {
      description: 'The document or an operation cannot be imported; nothing was written.',
      content: { 'application/problem+json': { schema: importProblem } },
    },
    409: problemResponse(
      'A tool of a generated name exists already, or the tools would pass `limits.perTenant.tools` (`resource_limit_exceeded`); nothing was written.',
    ),
  },
});

function shapeProblems(definition: HttpToolDefinition): ValidationIssue[] {
  const parsed = toolBody.safeParse(definition);
  if (parsed.success) return [];
  return parsed.error.issues.map((issue) => ({
    path: ['body', ...issue.path.map(String)].join('.'),
    message: issue.message,
  }));
}

/** Registers `importOpenApiTools`. */
export function registerToolImportRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(importOpenApiTools, async (context) => {
    const { document, dryRun, ...options } = context.req.valid('json');
    const result = await services.tools.importOpenApi(context.get('principal'), {
      document,
      options,
      dryRun,
      shapeProblems,
    });
    const tools = dryRun
      ? result.planned.map((definition) => ({
          ...(definition as z.infer<typeof toolBody>),
          id: null,
          kind: 'http' as const,
          version: null,
          createdAt: null,
          updatedAt: null,
        }))
      : result.created.map((tool) => toResponse({ ...tool, kind: 'http' }));
    return context.json({ dryRun, tools, skipped: result.skipped }, dryRun ? 200 : 201);
  });
}
