export type { CreateLoggerOptions, Logger } from './logger.ts';
export { createLogger, redactedPaths } from './logger.ts';
