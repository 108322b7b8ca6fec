import { readCapped } from './read-capped.ts';
import type { ToolDefinition } from './tool-registry.ts';

/** Options for {@link createHttpRequestTool}. */
export interface HttpRequestToolOptions {
  /** Hosts (`host` or `host:port`) the tool may call; anything else is refused. */
  readonly allowedHosts: readonly string[];
  readonly allowedMethods: readonly string[];
  /** Response bodies are read up to this many characters and cut there. */
  readonly maxResponseChars: number;
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
}

/**
 * The built-in `http_request` tool (risk class egress): calls only allow-listed hosts and
 * methods, sends the call's idempotency key as `Idempotency-Key` (so a receiver can dedupe a
 * call repeated after a crash), follows no redirects and reads at most `maxResponseChars` of
 * the response (a longer body is cut, marked with `…`, and its connection closed).
 */
export function createHttpRequestTool(options: HttpRequestToolOptions): ToolDefinition {
  const request = options.fetch ?? fetch;
  const methods = options.allowedMethods.map((method) => method.toUpperCase());
  return {
    name: 'http_request',
    description: `Makes an HTTP request to an allowed host (${options.allowedHosts.join(', ') || 'none configured'}).`,
    inputSchema: {
      type: 'object',
      properties: {
        url: { type: 'string', maxLength: 2048 },
        method: { type: 'string', description: methods.join(' | ') },
        body: { type: 'string', maxLength: 65_536 },
      },
      required: ['url'],
      additionalProperties: false,
    },
    risk: 'egress',
    async execute(input, context) {
      const url = new URL(String(input['url']));
      const method = String(input['method'] ?? 'GET').toUpperCase();
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new Error('only http and https URLs are allowed');
      if (
        !options.allowedHosts.includes(url.host) &&
        !options.allowedHosts.includes(url.hostname)
      ) {
        throw new Error(`host ${url.host} is not on the allow-list`);
      }
      if (!methods.includes(method)) throw new Error(`method ${method} is not allowed`);
      const done = new AbortController();
      const response = await request(url, {
        method,
        redirect: 'manual',
        headers: {
          'idempotency-key': context.idempotencyKey,
          ...(input['body'] === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(input['body'] === undefined ? {} : { body: String(input['body']) }),
        signal: AbortSignal.any([
          context.signal,
          AbortSignal.timeout(options.timeoutMs),
          done.signal,
        ]),
      });
      // At most the cap is read; a longer body is cut there and its connection closed.
      const { text, truncated } = await readCapped(response, {
        maxChars: options.maxResponseChars,
        abort: () => done.abort(),
      });
      return truncated
        ? { status: response.status, body: `${text}…`, truncated: true }
        : { status: response.status, body: text };
    },
  };
}
