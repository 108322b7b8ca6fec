export { configFileSchema, environmentSchema, logLevels } from './config-schema.ts';
export type { Config, ConfigIssue, DatabaseMode, LoadConfigOptions } from './load-config.ts';
export { ConfigError, loadConfig, processEnvironment } from './load-config.ts';
