import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

/**
 * A real MCP server (the SDK's, stateless Streamable HTTP) on 127.0.0.1 with one tool, `ping`,
 * that answers `pong`. It records the Authorization header of every HTTP request (listing
 * tools and calling one), so a test can see which credential each request carried.
 */
export async function startMcpAuthServer() {
  const authorizations: (string | undefined)[] = [];
  const http = createServer((request, response) => {
    authorizations.push(request.headers.authorization);
    const server = new McpServer({ name: 'auth-server', version: '1.0.0' });
    server.registerTool(
      'ping',
      { description: 'Answers pong.', inputSchema: { text: z.string().max(20) } },
      async () => ({ content: [{ type: 'text', text: 'pong' }] }),
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
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}
