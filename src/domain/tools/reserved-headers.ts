/**
 * Header names a tool's credential may not be sent in (`auth.headerName`, an OpenAPI import's
 * header parameters): the ones HTTP itself or Brigade sets for the request. A credential there
 * was dropped (`content-type`, set by the request), replaced a header Brigade promises
 * (`idempotency-key`), or broke every call at run time (`expect`, `upgrade`, `keep-alive`),
 * where a definition's mistakes are refused when it is made.
 */
export const reservedHeaderNames: ReadonlySet<string> = new Set([
  'host',
  'connection',
  'content-length',
  'content-type',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'keep-alive',
  'proxy-connection',
  'idempotency-key',
]);
