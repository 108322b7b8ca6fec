import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { processEnvironment } from '../src/config/index.ts';

/** Total CPU time (user + system) in milliseconds of the given processes, read from /proc. */
export function cpuMs(pids: readonly number[]): number {
  const ticksPerSecond = 100;
  let ticks = 0;
  // Each process once: callers pass the processes at the start plus those alive at the end.
  for (const pid of new Set(pids)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended; its time is lost to the measurement (rare for short-lived backends).
    }
  }
  return (ticks * 1000) / ticksPerSecond;
}

/** PIDs of all PostgreSQL server processes (postmaster and backends) on this machine. */
export function postgresPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSafe('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (
        command.startsWith('postgres') ||
        command.includes('/postgres\0') ||
        command.includes('bin/postgres')
      ) {
        pids.push(Number(entry));
      }
    } catch {
      // Gone.
    }
  }
  return pids;
}

/** `root` and every process below it (the embedded PostgreSQL and its backends), from /proc. */
export function processTree(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSafe('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(parent, [...(parents.get(parent) ?? []), Number(entry)]);
    } catch {
      // Gone.
    }
  }
  const tree: number[] = [];
  const visit = (pid: number) => {
    tree.push(pid);
    for (const child of parents.get(pid) ?? []) visit(child);
  };
  visit(root);
  return tree;
}

function readdirSafe(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** Percentile of an ascending-sorted array. */
export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0;
}

/** The machine block every benchmark prints. */
export function machine(): { cpus: number; node: string } {
  return { cpus: cpus().length, node: process.version };
}

/** Logs progress to stderr (stdout is reserved for the JSON result). */
export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Directory for V8 CPU profiles of benchmark phases (`BENCH_CPU_PROFILE`), if set. */
export function cpuProfileDirectory(): string | undefined {
  const directory = processEnvironment()['BENCH_CPU_PROFILE'];
  return directory === undefined || directory === '' ? undefined : directory;
}

/**
 * Runs `phase`; with `BENCH_CPU_PROFILE=<directory>` set, the benchmark process `pid` (started by
 * `gateway-child.ts`, which toggles its profiler on SIGUSR2) writes a V8 CPU profile of itself
 * during the phase to that directory (for finding where Node's time goes).
 */
export async function profiledIn<T>(pid: number, phase: () => Promise<T>): Promise<T> {
  if (cpuProfileDirectory() === undefined) return phase();
  process.kill(pid, 'SIGUSR2');
  try {
    return await phase();
  } finally {
    process.kill(pid, 'SIGUSR2');
  }
}

/** In a benchmark child: SIGUSR2 starts a V8 CPU profile, the next writes it (see profiledIn). */
export function profileOnSignal(name: string): void {
  const directory = cpuProfileDirectory();
  if (directory === undefined) return;
  let session: import('node:inspector/promises').Session | undefined;
  let count = 0;
  process.on('SIGUSR2', async () => {
    const { Session } = await import('node:inspector/promises');
    const { mkdirSync, writeFileSync } = await import('node:fs');
    if (session === undefined) {
      session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 500 });
      await session.post('Profiler.start');
      return;
    }
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    session = undefined;
    count += 1;
    mkdirSync(directory, { recursive: true });
    writeFileSync(`${directory}/${name}-${count}.cpuprofile`, JSON.stringify(profile));
  });
}
