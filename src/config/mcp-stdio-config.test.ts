import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './index.ts';

/** A directory without a `brigade.config.json`, so only the given file and env apply. */
let emptyDir: string;

beforeAll(() => {
  emptyDir = mkdtempSync(join(tmpdir(), 'brigade-config-stdio-'));
});

afterAll(() => {
  rmSync(emptyDir, { recursive: true, force: true });
});

function issuePaths(load: () => unknown): string[] {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues.map((issue) => issue.path).sort();
  }
  throw new Error('expected a ConfigError, but the configuration loaded');
}

describe('tools.mcpStdio', () => {
  it('gives a declared stdio MCP server PATH and nothing else of the environment', () => {
    const config = loadConfig({
      file: {
        tools: {
          mcpStdio: {
            servers: {
              github: {
                command: 'github-mcp',
                env: { MODE: 'x' },
                cwd: 'servers',
                credentialEnv: 'TOKEN',
              },
              own: { command: 'own', env: { PATH: '/opt/bin' } },
            },
          },
        },
      },
      env: { PATH: '/usr/bin:/bin', BRIGADE_MASTER_KEY: Buffer.alloc(32, 1).toString('base64') },
      cwd: emptyDir,
    });
    const { servers, maxProcesses } = config.tools.mcpStdio;
    expect(maxProcesses).toBe(64);
    expect(servers['github']).toMatchObject({
      env: { PATH: '/usr/bin:/bin', MODE: 'x' },
      cwd: join(emptyDir, 'servers'),
      args: [],
      timeoutMs: 30_000,
      idleMs: 300_000,
      maxProcesses: 16,
    });
    expect(servers['own']?.env).toEqual({ PATH: '/opt/bin' });
  });

  it('refuses a stdio MCP server with a bad name or its credential variable in env', () => {
    const paths = issuePaths(() =>
      loadConfig({
        file: {
          tools: {
            mcpStdio: {
              servers: {
                'Bad Name': { command: 'x' },
                dup: { command: 'x', credentialEnv: 'TOKEN', env: { TOKEN: 'plain' } },
                empty: { command: '' },
              },
            },
          },
        },
        env: {},
        cwd: emptyDir,
      }),
    );
    expect(paths).toEqual([
      'tools.mcpStdio.servers.Bad Name',
      'tools.mcpStdio.servers.dup',
      'tools.mcpStdio.servers.empty.command',
    ]);
  });
});
