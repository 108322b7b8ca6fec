export type { Config, ConfigIssue, DatabaseMode, LoadConfigOptions } from './config/index.ts';
export { ConfigError, loadConfig } from './config/index.ts';
export type { Brigade, CreateBrigadeOptions } from './main.ts';
export { createBrigade, version } from './main.ts';
export type { Logger } from './observability/index.ts';
export { createLogger } from './observability/index.ts';
