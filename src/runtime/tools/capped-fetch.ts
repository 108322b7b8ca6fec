/** A `fetch` as the MCP SDK's transports take it. */
export type FetchFunction = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** The error a response body fails with when it passes the cap. */
export class ResponseTooLargeError extends Error {
  constructor(maxBytes: number) {
    super(`the server's response passed ${maxBytes} bytes; the rest was not read`);
    this.name = 'ResponseTooLargeError';
  }
}

/**
 * A `fetch` whose response bodies fail once more than `maxBytes` bytes of one body arrive:
 * the request is aborted (nothing more is downloaded, the connection is closed) and whoever
 * reads the body gets {@link ResponseTooLargeError}. A body declaring a larger
 * `content-length` fails at once. A hostile or broken server's answer then costs at most the
 * cap (and one network chunk) in memory, however its reader buffers it.
 */
export function cappedFetch(maxBytes: number, base: FetchFunction = fetch): FetchFunction {
  return async (input, init) => {
    const controller = new AbortController();
    const signal =
      init?.signal === undefined || init.signal === null
        ? controller.signal
        : AbortSignal.any([init.signal, controller.signal]);
    const response = await base(input, { ...init, signal });
    const body = response.body;
    if (body === null || nullBodyStatuses.has(response.status)) return response;
    const declared = Number(response.headers.get('content-length') ?? Number.NaN);
    if (declared > maxBytes) {
      controller.abort();
      return withBody(response, failing(new ResponseTooLargeError(maxBytes)));
    }
    let received = 0;
    const counted = body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, stream) {
          received += chunk.byteLength;
          if (received > maxBytes) {
            controller.abort();
            stream.error(new ResponseTooLargeError(maxBytes));
            return;
          }
          stream.enqueue(chunk);
        },
      }),
    );
    return withBody(response, counted);
  };
}

/** Statuses a `Response` may not be built with a body for. */
const nullBodyStatuses = new Set([101, 103, 204, 205, 304]);

function failing(error: Error): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(stream) {
      stream.error(error);
    },
  });
}

function withBody(response: Response, body: ReadableStream<Uint8Array>): Response {
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}
