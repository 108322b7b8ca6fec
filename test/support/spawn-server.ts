import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { testOperatorKey } from './test-brigade.ts';

/** A Brigade server running as a separate process. */
export interface SpawnedServer {
  readonly url: string;
  readonly child: ChildProcess;
  /** Everything the process wrote to stdout and stderr. */
  output(): string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
}

const repository = resolve(import.meta.dirname, '../..');

/**
 * Starts `brigade serve` in a child process on `databaseUrl` with `config` as its config file,
 * and resolves once it prints its URL.
 */
export async function spawnServer(options: {
  readonly databaseUrl: string;
  readonly config: Record<string, unknown>;
  /**
   * Run the compiled server (`dist/`, built by `npm run build`) as `npm start` does, instead of
   * the sources through tsx; benchmarks measure what is deployed (tsx alone costs ~50 MB RSS).
   */
  readonly compiled?: boolean;
}): Promise<SpawnedServer> {
  const configPath = join(tmpdir(), `brigade-config-${randomBytes(4).toString('hex')}.json`);
  await writeFile(
    configPath,
    JSON.stringify({
      ...options.config,
      server: { port: 0, ...(options.config['server'] as object) },
    }),
  );
  const child = spawn(
    process.execPath,
    options.compiled === true
      ? [join(repository, 'dist/cli/main.js'), 'serve', '--config', configPath]
      : ['--import', 'tsx', join(repository, 'src/cli/main.ts'), 'serve', '--config', configPath],
    {
      cwd: repository,
      env: {
        // biome-ignore lint/style/noProcessEnv: the child needs PATH to find its tools.
        PATH: process.env['PATH'] ?? '',
        DATABASE_URL: options.databaseUrl,
        BRIGADE_OPERATOR_KEY: testOperatorKey,
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | string>((resolveExit) => {
    child.on('exit', (code, signal) => resolveExit(code ?? signal ?? 'unknown'));
  });
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 60_000);
    const check = () => {
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    };
    child.stdout?.on('data', check);
    exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`server exited before starting:\n${output}`));
    }, reject);
  });
  return { url, child, output: () => output, exited };
}
