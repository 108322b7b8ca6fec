import { z } from '@hono/zod-openapi';
import type { StoredMcpServer } from '../../domain/tools/mcp-types.ts';
import { toolRisks } from '../../domain/tools/tool-types.ts';
import type { McpServerService } from '../../runtime/mcp-server-service.ts';
import type { BrigadeApp } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';

const auth = z
  .strictObject({
    credential: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
    header: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,64}$/)
      .refine(
        (name) =>
          !['host', 'content-length', 'transfer-encoding', 'connection', 'content-type'].includes(
            name.toLowerCase(),
          ),
        'not allowed',
      )
      .optional()
      .openapi({ description: 'Header carrying the secret; absent: `Authorization: Bearer`.' }),
  })
  .openapi({
    description:
      "Each call carries the calling user's credential of this name (or the tenant's shared one).",
  });

const transport = z.enum(['http', 'stdio']).openapi({
  description:
    '`http`: a Streamable HTTP server at `url`. `stdio`: a server the operator declared in the configuration, named by `command`.',
});
const command = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,31}$/)
  .openapi({
    description:
      'Name of a stdio server declared by the operator (`tools.mcpStdio.servers`); never a command line.',
    example: 'github',
  });

const serverBody = z
  .strictObject({
    name: z
      .string()
      .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'lower-case letters, digits, _ and -')
      .openapi({ description: 'Agents name its tools `mcp:<name>:<tool>`.' }),
    transport: transport.default('http'),
    url: z.string().min(8).max(2_048).optional().openapi({
      description: 'The Streamable HTTP endpoint (http or https); only with `transport: http`.',
      example: 'https://mcp.example.com/mcp',
    }),
    command: command.optional(),
    auth: auth.optional(),
    risk: z.enum(toolRisks).default('egress').openapi({
      description: 'Risk class of every tool of the server.',
    }),
  })
  .superRefine((body, context) => {
    if (body.transport === 'http' && body.url === undefined)
      context.addIssue({ code: 'custom', path: ['url'], message: 'required with transport http' });
    if (body.transport === 'http' && body.command !== undefined)
      context.addIssue({ code: 'custom', path: ['command'], message: 'only with transport stdio' });
    if (body.transport === 'stdio' && body.command === undefined)
      context.addIssue({
        code: 'custom',
        path: ['command'],
        message: 'required with transport stdio',
      });
    if (body.transport === 'stdio' && body.url !== undefined)
      context.addIssue({ code: 'custom', path: ['url'], message: 'only with transport http' });
  })
  .openapi('McpServerDefinition');

const serverResponse = z
  .object({
    id: z.uuid(),
    name: z.string(),
    transport,
    url: z.string().optional(),
    command: z.string().optional(),
    auth: auth.optional(),
    risk: z.enum(toolRisks),
    createdAt: z.iso.datetime(),
  })
  .openapi('McpServer');

const tags = ['Tools'];

const createMcpServer = authedRoute({
  method: 'post',
  path: '/v1/mcp-servers',
  operationId: 'createMcpServer',
  tags,
  summary:
    'Register an MCP server for your tenant: Streamable HTTP, or a stdio server the operator declared (owners and admins)',
  request: { body: jsonBody(serverBody) },
  responses: {
    201: jsonResponse(serverResponse, 'The server.'),
    409: problemResponse(
      'A server with this name exists already, or the tenant has `limits.perTenant.mcpServers` servers (`resource_limit_exceeded`).',
    ),
  },
});
const listMcpServers = authedRoute({
  method: 'get',
  path: '/v1/mcp-servers',
  operationId: 'listMcpServers',
  tags,
  summary: "Your tenant's MCP servers",
  responses: { 200: jsonResponse(z.object({ data: z.array(serverResponse) }), 'Servers.') },
});
const deleteMcpServer = authedRoute({
  method: 'delete',
  path: '/v1/mcp-servers/{serverId}',
  operationId: 'deleteMcpServer',
  tags,
  summary: 'Remove an MCP server; agents naming its tools get an error back from the tool gate',
  request: { params: z.object({ serverId: idParam('serverId') }) },
  responses: { 204: { description: 'Deleted.' } },
});

function toResponse(server: StoredMcpServer) {
  return {
    id: server.id,
    name: server.name,
    transport: server.transport,
    ...(server.transport === 'stdio' ? { command: server.command } : { url: server.url }),
    ...(server.auth === undefined ? {} : { auth: server.auth }),
    risk: server.risk,
    createdAt: server.createdAt.toISOString(),
  };
}

/** Registers the MCP server operations. */
export function registerMcpRoutes(app: BrigadeApp, service: McpServerService): void {
  app.openapi(createMcpServer, async (context) => {
    const body = context.req.valid('json');
    const common = {
      name: body.name,
      risk: body.risk,
      ...(body.auth === undefined ? {} : { auth: body.auth }),
    };
    const created = await service.create(
      context.get('principal'),
      body.transport === 'stdio'
        ? { ...common, transport: 'stdio', command: body.command ?? '' }
        : { ...common, transport: 'http', url: body.url ?? '' },
    );
    return context.json(toResponse(created), 201);
  });
  app.openapi(listMcpServers, async (context) => {
    const servers = await service.list(context.get('principal'));
    return context.json({ data: servers.map(toResponse) }, 200);
  });
  app.openapi(deleteMcpServer, async (context) => {
    await service.delete(context.get('principal'), context.req.valid('param').serverId);
    return context.body(null, 204);
  });
}
