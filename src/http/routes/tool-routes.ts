import { z } from '@hono/zod-openapi';
import { roles } from '../../domain/identity/permissions.ts';
import { reservedHeaderNames } from '../../domain/tools/reserved-headers.ts';
import type { HttpToolDefinition, StoredTool, ToolBlock } from '../../domain/tools/tool-types.ts';
import { toolMethods, toolRisks } from '../../domain/tools/tool-types.ts';
import type { ListedTool } from '../../runtime/tool-service.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { withoutProtoKeys } from '../proto-keys.ts';
import {
  authedRoute,
  idParam,
  jsonBody,
  jsonResponse,
  mergePatch,
  patchBody,
  problemResponse,
} from '../route-helpers.ts';

const toolName = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'lower-case letters, digits and _');
/** What a kill switch names: a built-in or HTTP tool, or `mcp:<server>:<tool>`. */
const blockedToolName = z
  .string()
  .regex(
    /^(?:[a-z][a-z0-9_]{0,63}|mcp:[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.-]{1,64})$/,
    'a tool name, or mcp:<server>:<tool>',
  )
  .openapi({
    description: 'A built-in or HTTP tool, or `mcp:<server>:<tool>` of one of your MCP servers.',
  });

/** The fields of a tool definition (shared with the OpenAPI import). */
export const definitionFields = {
  name: toolName,
  description: z.string().min(1).max(2_000),
  risk: z.enum(toolRisks).openapi({
    description: '`sensitive`: moves money, deletes, sends as the user or changes permissions.',
  }),
  method: z.enum(toolMethods).default('GET'),
  urlTemplate: z.string().min(10).max(2_048).openapi({
    description:
      'Absolute http(s) URL with a literal host; `{arg}` placeholders are filled with URL-encoded argument values. Other arguments go in a JSON body (POST, PUT, PATCH).',
    example: 'https://api.example.com/v1/items/{id}',
  }),
  inputSchema: withoutProtoKeys(z.record(z.string(), z.unknown())).openapi({
    description:
      'JSON Schema of the arguments (an object schema), validated with Ajv; no key may be `__proto__`.',
  }),
  auth: z
    .strictObject({
      credential: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
      scheme: z.enum(['bearer', 'header', 'basic']),
      headerName: z
        .string()
        .regex(/^[A-Za-z0-9-]{1,64}$/)
        .refine(
          (name) => !reservedHeaderNames.has(name.toLowerCase()),
          'not allowed: HTTP or Brigade sets this header',
        )
        .optional(),
    })
    .optional()
    .openapi({
      description: "The calling user's credential of this name (or the tenant's shared one).",
    }),
  allowedRoles: z.array(z.enum(roles)).min(1).optional().openapi({
    description: 'Roles that may call the tool; absent means every role that runs agents.',
  }),
  timeoutMs: z.int().min(100).max(120_000).optional(),
  maxResponseChars: z.int().min(1).max(1_000_000).optional(),
  requiresConsent: z.boolean().optional().openapi({
    description:
      "Every call needs the calling user's consent `tool:<name>` (granted with scope `*` or the calling agent's id); without it the call fails with `consent_required` and nothing is sent.",
  }),
  provenanceRules: z
    .array(
      z.strictObject({
        argument: z.string().min(1).max(64),
        allowedValues: z.array(z.string().min(1).max(500)).max(100).optional(),
      }),
    )
    .max(20)
    .optional()
    .openapi({
      description:
        "Arguments whose value must appear in the user's own messages or in allowedValues (`*@example.com` suffixes allowed); otherwise the call waits for approval. Sensitive tools without rules apply one to every argument that can hold more than a boolean (strings, numbers, arrays, objects). Values must appear as a whole, not inside a longer word, number or address.",
    }),
};

/** A tool definition as createTool accepts it. */
export const toolBody = z.strictObject(definitionFields).openapi('ToolDefinition');

/** A tool as listings show it. */
export const toolResponse = z
  .object({
    id: z.uuid().nullable().openapi({ description: 'Null for built-in tools.' }),
    kind: z.enum(['builtin', 'http']),
    name: z.string(),
    description: z.string(),
    risk: z.enum(toolRisks),
    inputSchema: z.record(z.string(), z.unknown()),
    method: z.enum(toolMethods).optional(),
    urlTemplate: z.string().optional(),
    auth: definitionFields.auth,
    allowedRoles: definitionFields.allowedRoles,
    timeoutMs: z.int().optional(),
    maxResponseChars: z.int().optional(),
    requiresConsent: z.boolean().optional(),
    provenanceRules: definitionFields.provenanceRules,
    version: z.int().nullable(),
    createdAt: z.iso.datetime().nullable(),
    updatedAt: z.iso.datetime().nullable(),
  })
  .openapi('Tool');

const blockSchema = z
  .object({
    id: z.uuid(),
    toolName: z.string(),
    agentId: z.uuid().nullable(),
    reason: z.string().nullable(),
    createdAt: z.iso.datetime(),
  })
  .openapi('ToolBlock');

const params = z.object({ toolId: idParam('toolId') });
const tags = ['Tools'];
const conflict = {
  409: problemResponse(
    'A tool with this name exists already, or the tenant has `limits.perTenant.tools` tools (`resource_limit_exceeded`).',
  ),
};

const createTool = authedRoute({
  method: 'post',
  path: '/v1/tools',
  operationId: 'createTool',
  tags,
  summary: 'Define an HTTP tool for your tenant (owners and admins)',
  request: { body: jsonBody(toolBody) },
  responses: { 201: jsonResponse(toolResponse, 'The tool.'), ...conflict },
});
const listTools = authedRoute({
  method: 'get',
  path: '/v1/tools',
  operationId: 'listTools',
  tags,
  summary: "The built-in tools, then your tenant's HTTP tools",
  responses: { 200: jsonResponse(z.object({ data: z.array(toolResponse) }), 'Tools.') },
});
const getTool = authedRoute({
  method: 'get',
  path: '/v1/tools/{toolId}',
  operationId: 'getTool',
  tags,
  summary: "Get one of your tenant's tools",
  request: { params },
  responses: { 200: jsonResponse(toolResponse, 'The tool.') },
});
const updateTool = authedRoute({
  method: 'patch',
  path: '/v1/tools/{toolId}',
  operationId: 'updateTool',
  tags,
  summary: 'Change a tool: the fields sent replace the stored ones (owners and admins)',
  request: { params, body: jsonBody(patchBody(definitionFields)) },
  responses: { 200: jsonResponse(toolResponse, 'The tool.'), ...conflict },
});
const deleteTool = authedRoute({
  method: 'delete',
  path: '/v1/tools/{toolId}',
  operationId: 'deleteTool',
  tags,
  summary: 'Delete a tool; agents naming it get an error back from the tool gate',
  request: { params },
  responses: { 204: { description: 'Deleted.' } },
});
const disableTool = authedRoute({
  method: 'post',
  path: '/v1/tool-blocks',
  operationId: 'disableTool',
  tags,
  summary: 'Kill switch: refuse a tool tenant-wide or for one agent, from the next call on',
  request: {
    body: jsonBody(
      z
        .strictObject({
          toolName: blockedToolName,
          agentId: z
            .uuid()
            .optional()
            .openapi({ description: 'Only this agent; absent: every agent.' }),
          reason: z.string().max(500).optional(),
        })
        .openapi('DisableTool'),
    ),
  },
  responses: {
    201: jsonResponse(blockSchema, 'The kill switch.'),
    409: problemResponse('The tool is disabled there already.'),
  },
});
const listDisabledTools = authedRoute({
  method: 'get',
  path: '/v1/tool-blocks',
  operationId: 'listDisabledTools',
  tags,
  summary: "Your tenant's kill switches (owners and admins)",
  responses: { 200: jsonResponse(z.object({ data: z.array(blockSchema) }), 'Kill switches.') },
});
const enableTool = authedRoute({
  method: 'delete',
  path: '/v1/tool-blocks/{blockId}',
  operationId: 'enableTool',
  tags,
  summary: 'Remove a kill switch (owners and admins)',
  request: { params: z.object({ blockId: idParam('blockId') }) },
  responses: { 204: { description: 'Removed.' } },
});

/** Renders a listed tool. */
export function toResponse(listed: ListedTool) {
  if (listed.kind === 'builtin')
    return {
      id: null,
      kind: 'builtin' as const,
      name: listed.tool.name,
      description: listed.tool.description,
      risk: listed.tool.risk,
      inputSchema: { ...listed.tool.inputSchema },
      version: null,
      createdAt: null,
      updatedAt: null,
    };
  return {
    ...(listed.definition as z.infer<typeof toolBody>),
    id: listed.id,
    kind: 'http' as const,
    version: listed.version,
    createdAt: listed.createdAt.toISOString(),
    updatedAt: listed.updatedAt.toISOString(),
  };
}

function blockResponse(block: ToolBlock) {
  return { ...block, createdAt: block.createdAt.toISOString() };
}

const http = (tool: StoredTool) => toResponse({ ...tool, kind: 'http' });

/** Registers the tool registry and kill-switch operations. */
export function registerToolRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createTool, async (context) => {
    const created = await services.tools.create(
      context.get('principal'),
      context.req.valid('json') as HttpToolDefinition,
    );
    return context.json(http(created), 201);
  });
  app.openapi(listTools, async (context) => {
    const tools = await services.tools.list(context.get('principal'));
    return context.json({ data: tools.map(toResponse) }, 200);
  });
  app.openapi(getTool, async (context) => {
    const tool = await services.tools.get(
      context.get('principal'),
      context.req.valid('param').toolId,
    );
    return context.json(http(tool), 200);
  });
  app.openapi(updateTool, async (context) => {
    const principal = context.get('principal');
    const { toolId } = context.req.valid('param');
    const current = await services.tools.get(principal, toolId);
    const merged = await mergePatch(context, current.definition, toolBody);
    const updated = await services.tools.update(principal, toolId, merged as HttpToolDefinition);
    return context.json(http(updated), 200);
  });
  app.openapi(deleteTool, async (context) => {
    await services.tools.delete(context.get('principal'), context.req.valid('param').toolId);
    return context.body(null, 204);
  });
  app.openapi(disableTool, async (context) => {
    const block = await services.tools.disable(context.get('principal'), context.req.valid('json'));
    return context.json(blockResponse(block), 201);
  });
  app.openapi(listDisabledTools, async (context) => {
    const blocks = await services.tools.listBlocks(context.get('principal'));
    return context.json({ data: blocks.map(blockResponse) }, 200);
  });
  app.openapi(enableTool, async (context) => {
    await services.tools.enable(context.get('principal'), context.req.valid('param').blockId);
    return context.body(null, 204);
  });
}
