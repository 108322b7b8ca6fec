/** Benchmark processes started from `gateway-child.ts` (the mock model, the bare proxy, Brigade). */
import { type ChildProcess, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processEnvironment } from '../src/config/index.ts';

const childScript = fileURLToPath(new URL('./gateway-child.ts', import.meta.url));

/** A benchmark process and what it printed when ready. */
export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly key?: string;
}

/** Starts `gateway-child.ts <args>` (with `--cpu-prof` when BENCH_PROFILE names its mode). */
export function startChild(args: readonly string[]): Promise<Child> {
  const profile = processEnvironment()['BENCH_PROFILE'] === args[0];
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${join(tmpdir(), 'brigade-profiles')}`] : []),
      childScript,
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout?.on('data', (data: Buffer) => {
      buffered += data.toString();
      const line = buffered.split('\n')[0];
      if (buffered.includes('\n') && line !== undefined) {
        const ready = JSON.parse(line) as { pid: number; url: string; key?: string };
        resolve({ process: child, ...ready });
      }
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}

export async function stopChild(child: Child): Promise<void> {
  if (child.process.exitCode !== null) return;
  const exited = new Promise((resolve) => child.process.once('exit', resolve));
  child.process.kill('SIGTERM');
  await exited;
}
