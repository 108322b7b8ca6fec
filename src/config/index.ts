export { configFileSchema, logLevels } from './config-schema.ts';
export { environmentSchema } from './environment-schema.ts';
export type { Config, ConfigIssue, DatabaseMode, LoadConfigOptions } from './load-config.ts';
export { ConfigError, loadConfig, processEnvironment } from './load-config.ts';
