import { type ChildProcess, spawn } from 'node:child_process';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/** What starts one stdio MCP server process. */
export interface StdioProcessOptions {
  readonly command: string;
  readonly args: readonly string[];
  /** The child's whole environment: nothing of Brigade's own is added. */
  readonly env: Readonly<Record<string, string>>;
  readonly cwd?: string | undefined;
  /** Receives the child's stderr as it comes (the caller caps and redacts it). */
  readonly onStderr?: (chunk: string) => void;
  /** Largest single message accepted from the child, in bytes. */
  readonly maxMessageBytes?: number;
}

const graceMs = 2_000;

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    // The child leads its own process group (`detached`): the negative pid reaches the
    // processes it started too.
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Gone already.
    }
  }
}

/**
 * The MCP stdio client transport Brigade uses instead of the SDK's `StdioClientTransport`,
 * which always adds HOME, LOGNAME, PATH, SHELL, TERM and USER from the parent's environment
 * and starts the child in the parent's process group. Here the child gets exactly `env`, runs
 * without a shell in a process group of its own, and `close()` ends the whole group (stdin
 * closed, then SIGTERM, then SIGKILL), so a server's own children do not outlive it. Framing
 * (newline-delimited JSON-RPC) is the SDK's.
 */
export class StdioProcessTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JSONRPCMessage) => void) | undefined;
  #options: StdioProcessOptions;
  #child: ChildProcess | undefined;
  #buffer: ReadBuffer;
  #exited = false;

  constructor(options: StdioProcessOptions) {
    this.#options = options;
    this.#buffer = new ReadBuffer({ maxBufferSize: options.maxMessageBytes ?? 4 * 1024 * 1024 });
  }

  /** The child's process id (undefined before start). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Whether the child has exited (or never started). */
  get exited(): boolean {
    return this.#exited || this.#child === undefined;
  }

  start(): Promise<void> {
    if (this.#child !== undefined) throw new Error('the stdio transport was started already');
    return new Promise((resolve, reject) => {
      const child = spawn(this.#options.command, [...this.#options.args], {
        env: { ...this.#options.env },
        cwd: this.#options.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        detached: true,
        windowsHide: true,
      });
      this.#child = child;
      child.once('error', (error) => {
        this.#exited = true;
        reject(error);
        this.onerror?.(error);
      });
      child.once('spawn', () => resolve());
      child.once('exit', () => {
        this.#exited = true;
      });
      child.once('close', () => {
        this.#exited = true;
        this.onclose?.();
      });
      child.stdin?.on('error', (error) => this.onerror?.(error));
      child.stdout?.on('error', (error) => this.onerror?.(error));
      child.stdout?.on('data', (chunk: Buffer) => {
        try {
          this.#buffer.append(chunk);
          for (let message = this.#buffer.readMessage(); message !== null; ) {
            this.onmessage?.(message);
            message = this.#buffer.readMessage();
          }
        } catch (error) {
          this.onerror?.(error as Error);
          void this.close();
        }
      });
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => this.#options.onStderr?.(chunk));
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.#child?.stdin;
    if (stdin === undefined || stdin === null || this.#exited)
      return Promise.reject(new Error('the MCP server process is not running'));
    return new Promise((resolve) => {
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once('drain', resolve);
    });
  }

  async close(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const closed = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    const within = (ms: number) =>
      Promise.race([
        closed.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref()),
      ]);
    try {
      child.stdin?.end();
    } catch {
      // The pipe is gone with the process.
    }
    if (!(await within(graceMs))) {
      signalGroup(child, 'SIGTERM');
      if (!(await within(graceMs))) signalGroup(child, 'SIGKILL');
    }
    // The server's own children may outlive it when it exits on its own: end the group.
    signalGroup(child, 'SIGKILL');
    this.#buffer.clear();
  }
}
