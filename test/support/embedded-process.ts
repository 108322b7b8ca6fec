import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Spawning the real `brigade serve` CLI in a fresh working directory (no DATABASE_URL), as
 * `npm start` would run it, for process-level tests of the embedded deployment mode; every
 * process and workspace is removed by {@link cleanUp}.
 */

const repository = fileURLToPath(new URL('../..', import.meta.url));
const cliEntry = join(repository, 'src', 'cli', 'main.ts');
const tsxLoader = pathToFileURL(join(repository, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
export const isRoot = process.getuid?.() === 0;
export const operatorKeyPattern = /brg_op_[A-Za-z0-9_-]+/g;

/** How a spawned CLI process ended. */
export type Exit = { readonly code: number | null; readonly signal: NodeJS.Signals | null };

/** A spawned `brigade serve` with its captured output. */
export interface BrigadeProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  stdout(): string;
  stderr(): string;
}

/** A `brigade serve` that printed its start-up banner. */
export type RunningBrigade = BrigadeProcess & { readonly url: string };

const children = new Set<ChildProcess>();
const workspaces: string[] = [];

export function childEnvironment(): NodeJS.ProcessEnv {
  // biome-ignore lint/style/noProcessEnv: the child inherits the test environment minus database and Brigade settings.
  const inherited = Object.entries(process.env);
  const kept = inherited.filter(([name]) => !/^(DATABASE_|BRIGADE_|REDIS_URL$)/.test(name));
  return { ...Object.fromEntries(kept), LOG_LEVEL: 'warn' };
}

/** A fresh working directory (reachable by the postgres OS user) with a config file. */
export async function createWorkspace(config: Record<string, unknown> = {}): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'brigade-lifecycle-'));
  workspaces.push(directory);
  await chmod(directory, 0o755);
  const file = { ...config, server: { port: 0, shutdownGraceMs: 1000 } };
  await writeFile(join(directory, 'brigade.config.json'), JSON.stringify(file));
  return directory;
}

export function dataDirOf(workspace: string): string {
  return join(workspace, '.brigade', 'postgres');
}

export function spawnBrigade(workspace: string): BrigadeProcess {
  return spawnCli(workspace, ['serve']);
}

/** Spawns the real CLI with `argv` in `workspace` (embedded mode: no DATABASE_URL). */
export function spawnCli(workspace: string, argv: readonly string[]): BrigadeProcess {
  const child = spawn(process.execPath, ['--import', tsxLoader, cliEntry, ...argv], {
    cwd: workspace,
    env: childEnvironment(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Starts `brigade serve` in `workspace` and waits until its whole banner is printed. */
export async function startBrigade(workspace: string): Promise<RunningBrigade> {
  const started = spawnBrigade(workspace);
  const deadline = Date.now() + 45_000;
  // The banner ends with the "Try: curl" line, after the one-time operator key.
  while (!/listening on .*\n[\s\S]*Try: curl/.test(started.stdout())) {
    if (hasExited(started.child) || Date.now() > deadline) {
      throw new Error(
        `brigade serve did not start (exit ${started.child.exitCode}):\n${started.stdout()}\n${started.stderr()}`,
      );
    }
    await sleep(50);
  }
  const url = /listening on (http:\/\/\S+)/.exec(started.stdout())?.[1];
  if (url === undefined) throw new Error(`no URL in:\n${started.stdout()}`);
  return { ...started, url };
}

/** Resolves like `promise`, or with `fallback()` after `timeoutMs`; clears its timer. */
export async function within<T>(
  promise: Promise<T>,
  timeoutMs: number,
  fallback: () => T,
): Promise<T> {
  const timer = new AbortController();
  const timeout = sleep(timeoutMs, undefined, { signal: timer.signal }).then(fallback);
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    timer.abort();
    timeout.catch(() => undefined);
  }
}

export async function waitForExit(running: BrigadeProcess, timeoutMs: number): Promise<Exit> {
  return within(running.exited, timeoutMs, () => {
    throw new Error(`process did not exit within ${timeoutMs} ms:\n${running.stderr()}`);
  });
}

/** Sends SIGTERM and waits for the process to end. */
export async function stopBrigade(running: BrigadeProcess): Promise<Exit> {
  running.child.kill('SIGTERM');
  return waitForExit(running, 15_000);
}

/** State and parent pid from `/proc/<pid>/stat`, or undefined when there is no such process. */
export function procStat(pid: number): { state: string; parent: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state = '', parent = ''] = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state, parent: Number(parent) };
  } catch {
    return undefined;
  }
}

/** True while `pid` runs (a zombie answers kill(pid, 0) but no longer runs). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return procStat(pid)?.state !== 'Z';
}

/** The postmaster pid and port recorded in the data directory's lock file. */
export async function readPostmaster(
  dataDir: string,
): Promise<{ pid: number; port: number } | undefined> {
  const lockFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(lockFile)) return undefined;
  const [pid = '', , , port = ''] = (await readFile(lockFile, 'utf8')).split('\n');
  return { pid: Number.parseInt(pid, 10), port: Number.parseInt(port, 10) };
}

/** Pids of every process (postmaster and backends) whose working directory is `dataDir`. */
export async function processesIn(dataDir: string): Promise<number[]> {
  const target = existsSync(dataDir) ? realpathSync(dataDir) : dataDir;
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry));
  const found: number[] = [];
  for (const pid of pids) {
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined);
    if (cwd === target && isAlive(Number(pid))) found.push(Number(pid));
  }
  return found;
}

/** Stops whatever PostgreSQL still serves `dataDir` (only processes working in it). */
export async function stopLeftoverPostgres(dataDir: string): Promise<void> {
  const postmaster = await readPostmaster(dataDir).catch(() => undefined);
  const inDirectory = await processesIn(dataDir);
  const pid = postmaster?.pid;
  if (pid === undefined || !inDirectory.includes(pid)) return;
  process.kill(pid, 'SIGQUIT');
  for (let waited = 0; waited < 5_000 && isAlive(pid); waited += 100) await sleep(100);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

export async function cleanUp(): Promise<void> {
  for (const child of children) {
    if (!hasExited(child)) {
      child.kill('SIGTERM');
      const closed = new Promise<boolean>((resolve) => child.once('close', () => resolve(true)));
      if (!(await within(closed, 10_000, () => false))) child.kill('SIGKILL');
    }
  }
  children.clear();
  for (const workspace of workspaces.splice(0)) {
    await stopLeftoverPostgres(dataDirOf(workspace));
    await rm(workspace, { recursive: true, force: true });
  }
}
