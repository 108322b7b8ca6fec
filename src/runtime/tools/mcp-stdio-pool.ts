import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { type McpSession, type McpToolInfo, sessionOf } from './mcp-session.ts';
import {
  createCloseLog,
  type McpStdioOwner,
  type McpStdioProcessOwner,
  type McpStdioTarget,
  targetMatches,
} from './mcp-stdio-target.ts';
import { StdioProcessTransport } from './mcp-stdio-transport.ts';
import { createOutputGuard } from './output-guard.ts';

/** A stdio MCP server the operator declared (`tools.mcpStdio.servers.<name>`). */
export interface McpStdioDeclaration {
  readonly command: string;
  readonly args: readonly string[];
  /** The child's whole environment besides the credential (PATH included; never secrets). */
  readonly env: Readonly<Record<string, string>>;
  readonly cwd?: string | undefined;
  /** The variable carrying the calling user's credential; absent: the server takes none. */
  readonly credentialEnv?: string | undefined;
  /** Start-up, listing and call timeout, in milliseconds. */
  readonly timeoutMs: number;
  /** A process unused this long is closed, in milliseconds. */
  readonly idleMs: number;
  /** Processes of this server at once (all tenants and users). */
  readonly maxProcesses: number;
}

/** The part of a logger the pool writes to (pino's signature). */
export interface McpStdioLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

interface PooledProcess extends McpStdioProcessOwner {
  readonly key: string;
  readonly command: string;
  readonly credentialHash: string;
  readonly transport: StdioProcessTransport;
  readonly session: McpSession;
  readonly ready: Promise<void>;
  inFlight: number;
  lastUsed: number;
  idleTimer: NodeJS.Timeout | undefined;
  retired: boolean;
}

/** A declared server's tools could not be listed, or it is not declared at all. */
export class McpStdioError extends Error {
  override readonly name = 'McpStdioError';
}

const maxStderrLineChars = 1_000;

/** Times a call reads its secret again because a close matching it came meanwhile. */
const maxSecretReads = 3;

/**
 * The pool of stdio MCP server processes. A process belongs to one (tenant, user, server):
 * it is started with that user's credential in the declared variable and never serves
 * anyone else. Processes are reused while they live, closed after `idleMs` unused, and when
 * a server's `maxProcesses` or the pool's `maxProcesses` is reached the least recently used
 * idle one is closed first (busy ones are never interrupted: the caller is refused instead).
 * A process that died is started again on its next use. Closing ends the process group.
 * Stderr goes to the logger line by line, redacted (the user's secret, known key shapes) and
 * capped at `maxStderrBytes` per process.
 *
 * `close(target)` ends the processes of a user whose access ended, or started with a
 * credential that was replaced or deleted, at once (a call in flight on one fails). A call
 * that was reading its secret while such a close came reads it again, so no process starts
 * with a value read before the close; a call whose `signal` is aborted (its run cancelled)
 * starts none.
 */
export function createMcpStdioPool(options: {
  readonly servers: Readonly<Record<string, McpStdioDeclaration>>;
  readonly maxProcesses: number;
  readonly logger?: McpStdioLogger | undefined;
  readonly maxStderrBytes?: number;
  readonly now?: () => number;
}) {
  const now = options.now ?? Date.now;
  const maxStderrBytes = options.maxStderrBytes ?? 16_384;
  const processes = new Map<string, PooledProcess>();
  /** Processes left to end once their calls do ({@link recycle}): they count as the pool's. */
  const draining = new Set<PooledProcess>();
  /** Registration checks running now, by declared name: their processes count as the pool's. */
  const probing = new Map<string, number>();
  const closes = createCloseLog();
  let closing = false;

  function declaration(command: string): McpStdioDeclaration {
    const declared = options.servers[command];
    if (declared === undefined)
      throw new McpStdioError(`no stdio MCP server named '${command}' is declared`);
    return declared;
  }

  function stderrSink(source: {
    command: string;
    secret: string | undefined;
    pid: () => number | undefined;
  }) {
    const { command, secret } = source;
    const guard = createOutputGuard({
      secrets: () => (secret === undefined ? [] : [secret]),
      allowedLinkHosts: [],
    });
    let logged = 0;
    let pending = '';
    let capped = false;
    return (chunk: string) => {
      if (capped) return;
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      // A line this long is dropped whole: cutting it could cut a secret and leave half of it.
      if (pending.length > maxStderrLineChars * 8) pending = '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        // Redacted before it is shortened, for the same reason.
        const text = guard.redact(line).text.slice(0, maxStderrLineChars);
        logged += Buffer.byteLength(text);
        if (logged > maxStderrBytes) {
          capped = true;
          options.logger?.warn(
            { mcpStdio: command, pid: source.pid(), maxStderrBytes },
            'MCP server stderr over its cap; the rest is dropped',
          );
          return;
        }
        options.logger?.info(
          { mcpStdio: command, pid: source.pid(), stderr: text },
          'MCP server stderr',
        );
      }
    };
  }

  function spawnSession(command: string, secret: string | undefined) {
    const declared = declaration(command);
    const env: Record<string, string> = { ...declared.env };
    if (declared.credentialEnv !== undefined && secret !== undefined)
      env[declared.credentialEnv] = secret;
    const transport = new StdioProcessTransport({
      command: declared.command,
      args: declared.args,
      env,
      cwd: declared.cwd,
      onStderr: (chunk) => sink(chunk),
    });
    const sink = stderrSink({ command, secret, pid: () => transport.pid });
    const client = new Client({ name: 'brigade', version: '0.1.0' });
    const ready = client
      .connect(transport, { timeout: declared.timeoutMs })
      .catch(async (error: unknown) => {
        await transport.close().catch(() => undefined);
        throw new McpStdioError(
          `the stdio MCP server '${command}' did not start: ${(error as Error).message.slice(0, 200)}`,
        );
      });
    return { transport, client, session: sessionOf(client), ready, declared };
  }

  function retire(entry: PooledProcess, reason: string): void {
    if (entry.retired) return;
    entry.retired = true;
    clearTimeout(entry.idleTimer);
    draining.delete(entry);
    if (processes.get(entry.key) === entry) processes.delete(entry.key);
    options.logger?.info(
      { mcpStdio: entry.command, pid: entry.transport.pid, reason },
      'closing an MCP server process',
    );
    void entry.session.close().catch(() => undefined);
  }

  /** Closes the least recently used idle process among `candidates`; false when all are busy. */
  function evictOne(candidates: PooledProcess[]): boolean {
    const idle = candidates
      .filter((entry) => entry.inFlight === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed)[0];
    if (idle === undefined) return false;
    retire(idle, 'evicted');
    return true;
  }

  function makeRoom(command: string, max: number): void {
    const all = [...processes.values()];
    const own = all.filter((entry) => entry.command === command);
    const probes = [...probing.values()].reduce((sum, count) => sum + count, 0);
    const drainingOwn = [...draining].filter((entry) => entry.command === command).length;
    if (own.length + drainingOwn + (probing.get(command) ?? 0) >= max && !evictOne(own))
      throw new McpStdioError(`all ${max} processes of the MCP server '${command}' are busy`);
    const total = processes.size + draining.size + probes;
    if (total >= options.maxProcesses && !evictOne([...processes.values()]))
      throw new McpStdioError('all stdio MCP server processes are busy; try again later');
  }

  function acquire(owner: McpStdioOwner, secret: string | undefined): PooledProcess {
    if (closing) throw new McpStdioError('Brigade is shutting down');
    const key = `${owner.tenantId}:${owner.userId}:${owner.serverId}`;
    const credentialHash = createHash('sha256')
      .update(secret ?? '')
      .digest('hex');
    const existing = processes.get(key);
    if (existing !== undefined) {
      if (existing.transport.exited) retire(existing, 'exited');
      else if (existing.credentialHash !== credentialHash) retire(existing, 'credential changed');
      else return existing;
    }
    const declared = declaration(owner.command);
    makeRoom(owner.command, declared.maxProcesses);
    const started = spawnSession(owner.command, secret);
    const entry: PooledProcess = {
      key,
      tenantId: owner.tenantId,
      userId: owner.userId,
      serverId: owner.serverId,
      command: owner.command,
      credential: owner.credential,
      credentialHash,
      transport: started.transport,
      session: started.session,
      ready: started.ready,
      inFlight: 0,
      lastUsed: now(),
      idleTimer: undefined,
      retired: false,
    };
    started.client.onclose = () => {
      if (!entry.retired)
        options.logger?.warn(
          { mcpStdio: owner.command, pid: entry.transport.pid },
          'an MCP server process exited; it is started again on its next use',
        );
      entry.retired = true;
      clearTimeout(entry.idleTimer);
      draining.delete(entry);
      if (processes.get(key) === entry) processes.delete(key);
    };
    processes.set(key, entry);
    return entry;
  }

  function release(entry: PooledProcess): void {
    entry.inFlight -= 1;
    entry.lastUsed = now();
    if (entry.inFlight > 0 || entry.retired) return;
    if (draining.has(entry)) {
      retire(entry, 'recycled');
      return;
    }
    clearTimeout(entry.idleTimer);
    const { idleMs } = declaration(entry.command);
    entry.idleTimer = setTimeout(() => {
      if (entry.inFlight === 0) retire(entry, 'idle');
    }, idleMs);
    entry.idleTimer.unref();
  }

  return {
    /** The declared servers' names. */
    names(): string[] {
      return Object.keys(options.servers);
    },
    /** The declaration of `command`, or undefined when the operator declared none of that name. */
    declared(command: string): McpStdioDeclaration | undefined {
      return options.servers[command];
    },
    /**
     * Starts the server once without a credential, lists its tools and closes it (the check at
     * registration). Throws {@link McpStdioError} when it does not start or answer.
     */
    async probe(command: string): Promise<McpToolInfo[]> {
      if (closing) throw new McpStdioError('Brigade is shutting down');
      // A probe's process counts against the limits like a pooled one: registrations must not
      // be a way to start any number of processes on the host.
      makeRoom(command, declaration(command).maxProcesses);
      probing.set(command, (probing.get(command) ?? 0) + 1);
      const started = spawnSession(command, undefined);
      try {
        await started.ready;
        return await started.session.listTools({
          signal: AbortSignal.timeout(started.declared.timeoutMs),
        });
      } catch (error) {
        if (error instanceof McpStdioError) throw error;
        throw new McpStdioError(
          `the stdio MCP server '${command}' did not list its tools: ${(error as Error).message.slice(0, 200)}`,
        );
      } finally {
        await started.session.close().catch(() => undefined);
        const left = (probing.get(command) ?? 1) - 1;
        if (left > 0) probing.set(command, left);
        else probing.delete(command);
      }
    },
    /**
     * Runs `work` on the owner's own process, starting it (again) when needed. Refused when
     * `signal` is aborted before the process is reached (the run was cancelled: its user may
     * have been disabled and their processes closed).
     */
    async withSession<T>(
      owner: McpStdioOwner,
      work: (session: McpSession) => Promise<T>,
      signal?: AbortSignal,
    ): Promise<T> {
      let secret: string | undefined;
      for (let reads = 1; ; reads += 1) {
        const seen = closes.mark();
        secret = await owner.readSecret?.();
        // A close of this owner's processes came while the secret was read: the value may be
        // the one it closed them for, so it is read again.
        if (!closes.closedSince(seen, owner)) break;
        if (reads === maxSecretReads)
          throw new McpStdioError(
            `the processes of the MCP server '${owner.command}' were closed while it started; try again`,
          );
      }
      if (signal?.aborted === true)
        throw new McpStdioError(`the call to the MCP server '${owner.command}' was cancelled`);
      const entry = acquire(owner, secret);
      entry.inFlight += 1;
      clearTimeout(entry.idleTimer);
      try {
        await entry.ready.catch((error: unknown) => {
          retire(entry, 'did not start');
          throw error;
        });
        return await work(entry.session);
      } finally {
        release(entry);
      }
    },
    /** The declared timeout of `command` (calls and listings). */
    timeoutOf(command: string): number {
      return declaration(command).timeoutMs;
    },
    /**
     * Closes every process `target` names now, busy ones included (their calls fail): a user
     * disabled or erased, a tenant suspended, a credential replaced or deleted, a registration
     * deleted. Returns how many were closed.
     */
    close(target: McpStdioTarget, reason: string): number {
      closes.remember(target);
      let closed = 0;
      for (const entry of [...processes.values(), ...draining])
        if (targetMatches(target, entry)) {
          retire(entry, reason);
          closed += 1;
        }
      return closed;
    },
    /**
     * Closes every process, idle ones now and busy ones once their calls end; later calls start
     * new ones. For when close requests may have been missed (the signal connection was lost).
     */
    recycle(reason: string): void {
      closes.remember(undefined);
      for (const entry of [...processes.values()]) {
        if (entry.inFlight === 0) retire(entry, reason);
        else {
          processes.delete(entry.key);
          draining.add(entry);
        }
      }
    },
    /** Processes alive now. */
    get size(): number {
      return processes.size + draining.size;
    },
    /** Closes every process (server shutdown); later uses are refused. */
    async closeAll(): Promise<void> {
      closing = true;
      const entries = [...processes.values(), ...draining];
      processes.clear();
      draining.clear();
      await Promise.all(
        entries.map((entry) => {
          entry.retired = true;
          clearTimeout(entry.idleTimer);
          return entry.session.close().catch(() => undefined);
        }),
      );
    },
  };
}

/** The stdio MCP process pool's type. */
export type McpStdioPool = ReturnType<typeof createMcpStdioPool>;
