// A tiny stdio MCP server (the SDK's McpServer over StdioServerTransport) for tests; run it
// with `node`. Its tools report what the process received: a fingerprint of the credential
// in the variable named by argv[2] (default GITHUB_TOKEN), its pid and its environment's names.
import { createHash } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

// biome-ignore lint/style/noProcessEnv: this server reports the environment it was started with.
const environment = process.env;
const credentialVariable = process.argv[2] ?? 'GITHUB_TOKEN';
const server = new McpServer({ name: 'stdio-test-server', version: '1.0.0' });

function text(value) {
  return { content: [{ type: 'text', text: JSON.stringify(value) }] };
}

server.registerTool('whoami', { description: 'Fingerprint of the credential received.' }, () => {
  const secret = environment[credentialVariable];
  return text(
    secret === undefined
      ? { credential: null }
      : {
          last4: secret.slice(-4),
          sha: createHash('sha256').update(secret).digest('hex').slice(0, 12),
        },
  );
});
server.registerTool('pid', { description: 'The process id of this server.' }, () =>
  text({ pid: process.pid }),
);
server.registerTool('env_keys', { description: 'Names of the environment variables.' }, () =>
  text({ keys: Object.keys(environment).sort() }),
);
server.registerTool(
  'spawn_child',
  { description: 'Starts a sleeping grandchild process.' },
  async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], {
      stdio: 'ignore',
    });
    return text({ pid: child.pid });
  },
);

process.stderr.write(
  `stdio-test-server started; credential ${environment[credentialVariable] ?? 'none'}\n`,
);
await server.connect(new StdioServerTransport());
