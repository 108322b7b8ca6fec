import { type DestinationStream, type Logger, pino } from 'pino';
import { activeTraceIds } from './tracing.ts';

/** Paths pino replaces with `[redacted]` wherever they appear in a log object. */
export const redactedPaths = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'operatorKey',
  '*.operatorKey',
  'connectionString',
  '*.connectionString',
  // OAuth token material (RFC 6749 names and ours).
  'accessToken',
  '*.accessToken',
  'refreshToken',
  '*.refreshToken',
  'clientSecret',
  '*.clientSecret',
  'access_token',
  '*.access_token',
  'refresh_token',
  '*.refresh_token',
  'client_secret',
  '*.client_secret',
];

/** Options for {@link createLogger}. */
export interface CreateLoggerOptions {
  readonly level: string;
  /** Where lines go; defaults to asynchronous stdout. */
  readonly destination?: DestinationStream;
}

/** Creates the JSON logger with secret redaction. Only `main.ts` and the CLI create one. */
export function createLogger(options: CreateLoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'brigade' },
      redact: { paths: redactedPaths, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Every line logged inside a span names its trace and span.
      mixin: () => activeTraceIds() ?? {},
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}

export type { Logger };
