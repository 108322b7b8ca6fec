import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../domain/errors.ts';
import { statusByCode, titleByCode } from './error-response.ts';

/** The codes Node's HTTP parser reports for a request it could not read, as Brigade codes. */
function toCode(nodeCode: string | undefined): { code: ErrorCode; detail: string } {
  if (nodeCode === 'HPE_HEADER_OVERFLOW')
    return { code: 'headers_too_large', detail: 'The request headers are too large.' };
  if (nodeCode === 'HPE_CHUNK_EXTENSIONS_OVERFLOW')
    return { code: 'payload_too_large', detail: 'The chunk extensions are too large.' };
  if (nodeCode === 'ERR_HTTP_REQUEST_TIMEOUT')
    return { code: 'request_too_slow', detail: 'The request was not received in time.' };
  return { code: 'bad_request', detail: 'The request is not valid HTTP/1.1.' };
}

/**
 * Answers a request Node's HTTP parser refused (the server's `clientError` event: oversized
 * headers, malformed syntax, a request too slow to arrive) with a problem+json document and a
 * fresh request id, as every other error, instead of Node's bare status line; then closes the
 * connection, whose unread rest cannot be parsed. A connection already reset, or one whose
 * response has begun, is only destroyed (writing there would corrupt what the peer reads).
 */
export function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
    socket.destroy();
    return;
  }
  const { code, detail } = toCode(error.code);
  const status = statusByCode[code];
  const requestId = randomUUID();
  const body = JSON.stringify({
    type: `https://brigade.dev/problems/${code}`,
    title: titleByCode[code],
    status,
    code,
    detail,
    requestId,
  });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      'Content-Type: application/problem+json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Request-Id: ${requestId}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
    () => socket.destroy(),
  );
}
