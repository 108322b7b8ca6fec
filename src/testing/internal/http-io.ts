import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MockAuthorization } from './mock-model-types.ts';

/** A request body read with a size cap; `tooLarge` bodies were drained and dropped. */
export type BodyResult =
  | { readonly tooLarge: false; readonly text: string }
  | { readonly tooLarge: true };

/**
 * Reads the whole body, keeping at most `maxBytes`: past that it keeps draining the socket (so
 * a 413 can still be sent) but stops buffering, so a huge upload cannot grow memory.
 */
export async function readBody(request: IncomingMessage, maxBytes: number): Promise<BodyResult> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size <= maxBytes) chunks.push(buffer);
  }
  return size > maxBytes
    ? { tooLarge: true }
    : { tooLarge: false, text: Buffer.concat(chunks).toString('utf8') };
}

const redactedHeaders = new Set(['api-key', 'x-api-key', 'proxy-authorization', 'cookie']);

/** Headers to record: lower-cased, `authorization` left out, other credentials redacted. */
export function recordableHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const recorded: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name === 'authorization' || value === undefined) continue;
    recorded[name] = redactedHeaders.has(name)
      ? '[redacted]'
      : Array.isArray(value)
        ? value.join(', ')
        : value;
  }
  return recorded;
}

/** Whether an authorization header came, and its scheme word; never its credential. */
export function describeAuthorization(value: string | undefined): MockAuthorization {
  if (value === undefined) return { present: false };
  const scheme = value.trim().split(/\s+/)[0];
  return scheme === undefined || scheme === '' ? { present: true } : { present: true, scheme };
}

/** Options of {@link sendJson}. */
export interface SendJsonOptions {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Sends one JSON response and ends it. */
export function sendJson(response: ServerResponse, options: SendJsonOptions): void {
  const payload = JSON.stringify(options.body);
  response.writeHead(options.status, {
    ...options.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  response.end(payload);
}

/**
 * Writes `data` and, when the socket buffer is full, waits for 'drain' before resolving, so a
 * slow reader holds the writer back instead of letting the buffer grow. Resolves false when
 * the connection closed first.
 */
export function writeData(response: ServerResponse, data: string): Promise<boolean> {
  if (response.destroyed || response.writableEnded) return Promise.resolve(false);
  if (response.write(data)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const settle = (written: boolean) => () => {
      response.off('drain', onDrain);
      response.off('close', onClose);
      resolve(written);
    };
    const onDrain = settle(true);
    const onClose = settle(false);
    response.once('drain', onDrain);
    response.once('close', onClose);
  });
}

/**
 * Waits until everything written so far has been handed to the operating system (or the
 * connection is gone), so a deliberate reset right after does not swallow those bytes. An empty
 * write's callback runs after the writes before it: 'drain' would not do, as it only fires
 * after a write was refused.
 */
export function waitForFlush(response: ServerResponse): Promise<void> {
  if (response.destroyed || response.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    response.write('', () => resolve());
  });
}

/** Waits `milliseconds`; resolves false instead when `signal` aborts first. */
export async function delay(milliseconds: number, signal: AbortSignal): Promise<boolean> {
  if (milliseconds <= 0) return !signal.aborted;
  try {
    await sleep(milliseconds, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}
