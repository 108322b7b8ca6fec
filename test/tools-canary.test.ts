import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, runOnce, startLoggedServer } from './support/tool-fixtures.ts';

/**
 * A canary secret against traces and errors: upstreams that fail and echo the caller's
 * credential back (an HTTP API in its 500 error body, an MCP server in its error result), with
 * every span exported over OTLP to an in-process collector, spans kept in the span store, and
 * content capture on. The canary must appear in no span, no run event, no API response, no
 * audit event and no log line — while the upstreams did receive it.
 */
const canary = `canary-trace-${'5'.repeat(24)}`;
/** A `basic` credential whose password is the canary: upstreams echo it decoded, or encoded. */
const basicSecret = `svc-user:${canary}`;
const basicEncoded = Buffer.from(basicSecret).toString('base64');

let server: LoggedServer;
let collector: Server;
let upstream: Server;
let mcp: Server;
let owner: ApiClient;
let admin: ApiClient;
let member: ApiClient;
let tenantId: string;
const exported: string[] = [];
/** What the upstreams received in their credential headers (proves the canary was sent). */
const presented: string[] = [];
/** Every API response body the test saw. */
const responses: string[] = [];

function keep<T>(response: T): T {
  responses.push(JSON.stringify(response));
  return response;
}

async function listen(target: Server): Promise<string> {
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(target.address() as AddressInfo).port}`;
}

/** A failing API: 500 with the credential headers it got in the error body. */
function startFailingUpstream(): Promise<string> {
  upstream = createServer((request, response) => {
    const authorization = request.headers.authorization ?? '';
    const headers = {
      authorization,
      'x-api-key': request.headers['x-api-key'],
      // As "wrong password X for user Y" errors do: the Basic credentials decoded, and bare.
      ...(authorization.startsWith('Basic ')
        ? {
            decoded: Buffer.from(authorization.slice(6), 'base64').toString('utf8'),
            encoded: authorization.slice(6),
          }
        : {}),
    };
    presented.push(JSON.stringify(headers));
    response.writeHead(500, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ error: 'upstream exploded', youSent: headers }));
  });
  return listen(upstream);
}

/** An MCP server whose tool fails with the Authorization header in its error text. */
function startFailingMcp(): Promise<string> {
  mcp = createServer((request, response) => {
    const server = new McpServer({ name: 'failing', version: '1.0.0' });
    server.registerTool(
      'explode',
      { description: 'Always fails.', inputSchema: { text: z.string().max(20) } },
      async (_args, extra) => {
        const header = String(extra.requestInfo?.headers['authorization'] ?? '');
        presented.push(header);
        return { isError: true, content: [{ type: 'text', text: `denied for ${header}` }] };
      },
    );
    const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true });
    response.on('close', () => {
      void transport.close();
      void server.close();
    });
    server
      .connect(transport)
      .then(() => transport.handleRequest(request, response))
      .catch(() => {
        if (!response.headersSent) response.writeHead(500).end();
      });
  });
  return listen(mcp).then((url) => `${url}/mcp`);
}

beforeAll(async () => {
  collector = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    request.on('end', () => {
      exported.push(body);
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const collectorUrl = await listen(collector);
  const upstreamUrl = await startFailingUpstream();
  const mcpUrl = await startFailingMcp();
  server = await startLoggedServer({
    tracing: { otlpEndpoint: `${collectorUrl}/v1/traces`, store: true, userAttribute: 'id' },
  });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'canary-traces');
  owner = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'owner' })).secret);
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  // Content capture on: spans carry the (redacted) messages, tool results included.
  expect(
    keep(await owner.request('PATCH', `/v1/tenants/${tenantId}`, { captureContent: true })).status,
  ).toBe(200);
  expect(
    keep(await member.post('/v1/me/consents', { purpose: 'content_capture', version: '1' })).status,
  ).toBe(201);
  const inputSchema = {
    type: 'object',
    properties: { q: { type: 'string', maxLength: 20 } },
    additionalProperties: false,
  };
  for (const [name, auth] of [
    ['bearer_fails', { credential: 'svc', scheme: 'bearer' }],
    ['header_fails', { credential: 'svc', scheme: 'header', headerName: 'x-api-key' }],
    ['basic_fails', { credential: 'svc-basic', scheme: 'basic' }],
  ] as const) {
    const tool = keep(
      await admin.post('/v1/tools', {
        name,
        description: 'Fails, echoing the credential.',
        risk: 'read',
        urlTemplate: `${upstreamUrl}/fail`,
        inputSchema,
        auth,
      }),
    );
    expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  }
  const registered = keep(
    await admin.post('/v1/mcp-servers', { name: 'boom', url: mcpUrl, auth: { credential: 'svc' } }),
  );
  expect(registered.status, JSON.stringify(registered.body)).toBe(201);
  expect(
    keep(await member.post('/v1/me/credentials', { name: 'svc', secret: canary })).status,
  ).toBe(201);
  expect(
    keep(
      await member.post('/v1/me/credentials', {
        name: 'svc-basic',
        kind: 'basic',
        secret: basicSecret,
      }),
    ).status,
  ).toBe(201);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  for (const target of [collector, upstream, mcp]) {
    target?.closeAllConnections();
    await new Promise((resolve) => target?.close(resolve));
  }
});

describe('a canary secret against failing upstreams', () => {
  it('reaches the upstreams, and none of their echoes reaches a span, event, response or log', async () => {
    const agent = keep(
      await admin.post<Created>('/v1/agents', {
        name: 'canary',
        tools: ['bearer_fails', 'header_fails', 'basic_fails', 'mcp:boom:explode'],
      }),
    );
    const runs = [];
    for (const input of [
      'call bearer_fails {"q":"a"}',
      'call header_fails {"q":"b"}',
      'call basic_fails {"q":"d"}',
      'call mcp:boom:explode {"text":"c"}',
    ]) {
      const result = await runOnce(member, { agentId: agent.body.id, input });
      expect(result.run.status).toBe('completed');
      responses.push(result.transcript);
      runs.push(result);
    }
    // The upstreams got the secret (so the echoes held it) ...
    expect(presented.filter((text) => text.includes(canary))).toHaveLength(4);
    // ... and the model and user saw the failures, redacted.
    expect(runs[0]?.answer).toContain('upstream exploded');
    expect(runs[1]?.answer).toContain('[redacted]');
    expect(runs[2]?.answer).toContain('upstream exploded');
    expect(runs[2]?.answer).toContain('[redacted]');
    expect(runs[3]?.answer).toContain('mcp:boom:explode failed');
    expect(runs[3]?.answer).toContain('[redacted]');

    // Spans: the span store through getRunTrace, and everything exported over OTLP.
    type Span = { name: string; attributes: Record<string, unknown> };
    const stored: Span[] = [];
    for (const { ids } of runs) {
      const path = `/v1/threads/${ids.threadId}/runs/${ids.runId}/trace`;
      let spans: Span[] = [];
      for (let attempt = 0; attempt < 100; attempt += 1) {
        const trace = await member.get<{ spans: Span[] }>(path);
        spans = trace.body.spans;
        // The run's root span ends last: once it is stored, so are its model and tool spans.
        if (spans.some((span) => span.name.startsWith('invoke_agent'))) {
          responses.push(JSON.stringify(trace.body));
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      stored.push(...spans);
    }
    expect(stored.filter((span) => span.name.startsWith('execute_tool'))).toHaveLength(4);
    const captured = stored.filter(
      (span) => span.attributes['gen_ai.input.messages'] !== undefined,
    );
    expect(captured.length).toBeGreaterThan(0);
    // The echoed failures are on the spans (the tool results the second model call read) ...
    expect(JSON.stringify(captured)).toContain('upstream');
    expect(JSON.stringify(captured)).toContain('denied');
    // ... with the secret redacted.
    expect(JSON.stringify(captured)).toContain('[redacted]');
    // The batch processor exports every 5 s.
    for (
      let attempt = 0;
      attempt < 150 && exported.join('').split('execute_tool').length - 1 < 4;
      attempt += 1
    )
      await new Promise((resolve) => setTimeout(resolve, 100));
    const otlp = exported.join('\n');
    expect(otlp.split('execute_tool').length - 1).toBeGreaterThanOrEqual(4);
    expect(otlp).toContain('gen_ai.input.messages');
    for (const secret of [canary, basicEncoded]) {
      expect(otlp).not.toContain(secret);
      expect(JSON.stringify(stored)).not.toContain(secret);
    }

    // The audit log (tool.called, credential.used) holds no secret either.
    const auditLog = keep(
      await admin.get<{ data: { action: string }[] }>(
        `/v1/tenants/${tenantId}/audit-events?limit=500`,
      ),
    );
    expect(auditLog.body.data.map((event) => event.action)).toContain('credential.used');

    const everything = [...responses, ...server.logs].join('\n');
    expect(server.logs.length).toBeGreaterThan(0);
    expect(everything).not.toContain(canary);
    expect(everything).not.toContain(basicEncoded);
  });
});
