import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { z } from 'zod';
import { routeProblems } from '../gateway/route-schema.ts';
import { locateConfigFile, parseConfigText } from './config-file.ts';
import { type ConfigFile, configFileSchema } from './config-schema.ts';
import { environmentSchema } from './environment-schema.ts';

/** Where the database lives: an embedded cluster Brigade starts, or an external server. */
export type DatabaseMode =
  | { readonly kind: 'embedded'; readonly dataDir: string; readonly port: number | undefined }
  | {
      readonly kind: 'external';
      readonly ownerUrl: string;
      readonly runtimeUrl: string | undefined;
    };

/** The validated, frozen configuration every other module receives. */
export interface Config {
  readonly server: ConfigFile['server'];
  readonly database: Omit<ConfigFile['database'], 'embedded'> & { readonly mode: DatabaseMode };
  readonly auth: ConfigFile['auth'];
  readonly runs: ConfigFile['runs'];
  readonly memory: ConfigFile['memory'];
  readonly models: ConfigFile['models'];
  readonly tools: ConfigFile['tools'];
  readonly limits: ConfigFile['limits'];
  /** Providers with their API keys resolved from the environment. */
  /** Platform model routes. */
  readonly routes: ConfigFile['routes'];
  readonly webhooks: ConfigFile['webhooks'];
  readonly retention: ConfigFile['retention'];
  readonly tracing: ConfigFile['tracing'] & {
    readonly otlpHeaders: Readonly<Record<string, string>>;
  };
  readonly providers: Readonly<
    Record<
      string,
      Omit<ConfigFile['providers'][string], 'apiKeyEnv'> & { readonly apiKey: string | undefined }
    >
  >;
  readonly log: ConfigFile['log'];
  readonly audit: ConfigFile['audit'] & {
    /** `BRIGADE_AUDIT_SIGNING_KEY` (secret: never log it). */
    readonly signingKey: string | undefined;
    /** Where the embedded mode keeps a generated key when none is set; undefined in server mode. */
    readonly signingKeyFile: string | undefined;
  };
  readonly metrics: { readonly token: string | undefined };
  /** The credentials vault's master keys (secrets: never log them). */
  readonly vault: {
    readonly masterKey: string | undefined;
    readonly previousMasterKey: string | undefined;
    /** Where the embedded mode keeps a generated key when none is set; undefined in server mode. */
    readonly masterKeyFile: string | undefined;
    /**
     * The key-provider plugin replacing `BRIGADE_MASTER_KEY`: `module` is an absolute path
     * (resolved against the configuration file's folder) or a package name.
     */
    readonly keyProvider:
      | { readonly module: string; readonly options: Readonly<Record<string, unknown>> }
      | undefined;
  };
  readonly redisUrl: string | undefined;
  readonly operatorKey: string | undefined;
  /** The file the configuration came from, or undefined when only defaults and env were used. */
  readonly configPath: string | undefined;
}

/** One problem found in the configuration, with the path of the offending key. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/** Thrown when the configuration is invalid; lists every problem at once. */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(
      `invalid configuration:\n${issues.map((issue) => `  - ${issue.path}: ${issue.message}`).join('\n')}`,
    );
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** The process environment; config/ is the only module that reads it. */
export function processEnvironment(): Readonly<Record<string, string | undefined>> {
  return process.env;
}

/** Options for {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Explicit config file path (from `--config`); must exist when given. */
  readonly configPath?: string | undefined;
  /** Environment to read; defaults to `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Working directory against which relative paths resolve. */
  readonly cwd?: string;
  /** Parsed config file contents to use instead of reading a file (tests, the library). */
  readonly file?: unknown;
  /**
   * Whether every provider's `apiKeyEnv` must be set (default true). Commands that never call
   * a model (migrations, keys, audit, usage) pass false, so an operator does not need every
   * provider secret in their shell to run them.
   */
  readonly requireProviderKeys?: boolean;
}

function toIssues(prefix: string, error: z.ZodError): ConfigIssue[] {
  return error.issues.flatMap((issue) => {
    const keys = 'keys' in issue && Array.isArray(issue.keys) ? issue.keys : [];
    const base = [prefix, ...issue.path.map(String)].filter((part) => part !== '').join('.');
    if (issue.code === 'unrecognized_keys' && keys.length > 0) {
      return keys.map((key) => ({
        path: base === '' ? key : `${base}.${key}`,
        message: 'unknown key',
      }));
    }
    // A record key that fails its pattern: zod says only "Invalid key in record".
    const keyIssue =
      issue.code === 'invalid_key' && 'issues' in issue && Array.isArray(issue.issues)
        ? (issue.issues[0] as { message?: unknown } | undefined)
        : undefined;
    const message =
      typeof keyIssue?.message === 'string' ? `invalid name: ${keyIssue.message}` : issue.message;
    return [{ path: base === '' ? '(root)' : base, message }];
  });
}

function readConfigFile(path: string, required: boolean): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError([
      { path, message: `cannot read config file (${(error as Error).message})` },
    ]);
  }
  const parsed = parseConfigText(path, text);
  if ('problem' in parsed) throw new ConfigError([{ path, message: parsed.problem }]);
  return parsed.value;
}

/**
 * Loads `brigade.config.json` (or `.yaml`, `.yml`; or the file named by `--config` /
 * `BRIGADE_CONFIG`, YAML when its name ends so) and the
 * environment, validates both, and returns a frozen {@link Config}. Every invalid key is
 * reported at once in one {@link ConfigError}.
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.configPath ?? env['BRIGADE_CONFIG'];
  const located =
    explicit === undefined
      ? locateConfigFile(cwd)
      : { path: resolve(cwd, explicit), others: [] as string[] };
  const { path } = located;
  if (options.file === undefined && located.others.length > 0)
    throw new ConfigError([
      {
        path,
        message: `more than one config file: ${[path, ...located.others].join(', ')}; keep one, or name it with --config`,
      },
    ]);
  const raw = options.file ?? readConfigFile(path, explicit !== undefined);
  const fileResult = configFileSchema.safeParse(raw);
  const envResult = environmentSchema.safeParse(env);
  const issues = [
    ...(fileResult.success ? [] : toIssues('', fileResult.error)),
    ...(envResult.success ? [] : toIssues('env', envResult.error)),
  ];
  if (!fileResult.success || !envResult.success) throw new ConfigError(issues);
  const file = fileResult.data;
  const environment = envResult.data;
  if (environment.DATABASE_RUNTIME_URL !== undefined && environment.DATABASE_URL === undefined) {
    throw new ConfigError([
      { path: 'env.DATABASE_RUNTIME_URL', message: 'requires DATABASE_URL (the owner connection)' },
    ]);
  }
  const mode: DatabaseMode =
    environment.DATABASE_URL === undefined
      ? {
          kind: 'embedded',
          dataDir: resolve(cwd, file.database.embedded.dataDir),
          port: file.database.embedded.port,
        }
      : {
          kind: 'external',
          ownerUrl: environment.DATABASE_URL,
          runtimeUrl: environment.DATABASE_RUNTIME_URL,
        };
  const providerIssues: ConfigIssue[] = [];
  const providers = Object.fromEntries(
    Object.entries(file.providers).map(([name, { apiKeyEnv, ...provider }]) => {
      const apiKey = apiKeyEnv === undefined ? undefined : env[apiKeyEnv];
      const missing = apiKeyEnv !== undefined && (apiKey === undefined || apiKey === '');
      if (missing && options.requireProviderKeys !== false) {
        providerIssues.push({
          path: `env.${apiKeyEnv}`,
          message: `not set (providers.${name}.apiKeyEnv names it)`,
        });
      }
      if (provider.type === 'openai-compatible' && provider.baseUrl === undefined) {
        providerIssues.push({
          path: `providers.${name}.baseUrl`,
          message: 'required for openai-compatible providers',
        });
      }
      return [name, { ...provider, apiKey }];
    }),
  );
  file.routes.forEach((route, index) => {
    route.deployments.forEach((deployment, at) => {
      const provider = deployment.model.split(':')[0] ?? '';
      if (deployment.model !== 'local' && file.providers[provider] === undefined)
        providerIssues.push({
          path: `routes.${index}.deployments.${at}.model`,
          message: `no provider named '${provider}' is configured`,
        });
    });
    for (const problem of routeProblems(route))
      providerIssues.push({ path: `routes.${index}.${problem.path}`, message: problem.message });
    route.fallbacks.forEach((fallback, at) => {
      if (!file.routes.some((other) => other.name === fallback.route))
        providerIssues.push({
          path: `routes.${index}.fallbacks.${at}.route`,
          message: `no route named '${fallback.route}'`,
        });
    });
  });
  if (file.vault.keyProvider !== undefined && environment.BRIGADE_MASTER_KEY !== undefined)
    providerIssues.push({
      path: 'vault.keyProvider',
      message:
        'BRIGADE_MASTER_KEY is set too: use one master key source (BRIGADE_MASTER_KEY_PREVIOUS may stay while migrating to the provider)',
    });
  if (providerIssues.length > 0) throw new ConfigError(providerIssues);
  const { embedded: _embedded, ...database } = file.database;
  const config: Config = {
    server: {
      ...file.server,
      host: environment.BRIGADE_HOST ?? file.server.host,
      port: environment.BRIGADE_PORT ?? file.server.port,
    },
    database: { ...database, mode },
    auth: file.auth,
    runs: file.runs,
    memory: file.memory,
    models: file.models,
    routes: file.routes,
    tools: {
      ...file.tools,
      mcpStdio: {
        ...file.tools.mcpStdio,
        // A stdio server gets PATH from Brigade's environment (unless declared) and nothing else.
        servers: Object.fromEntries(
          Object.entries(file.tools.mcpStdio.servers).map(([name, server]) => [
            name,
            {
              ...server,
              env: { ...(env['PATH'] === undefined ? {} : { PATH: env['PATH'] }), ...server.env },
              ...(server.cwd === undefined ? {} : { cwd: resolve(cwd, server.cwd) }),
            },
          ]),
        ),
      },
    },
    limits: file.limits,
    webhooks: file.webhooks,
    retention: file.retention,
    tracing: {
      ...file.tracing,
      otlpHeaders: Object.fromEntries(
        (environment.BRIGADE_OTLP_HEADERS ?? '')
          .split(',')
          .filter((pair) => pair.includes('='))
          .map((pair) => [
            pair.slice(0, pair.indexOf('=')).trim(),
            pair.slice(pair.indexOf('=') + 1).trim(),
          ]),
      ),
    },
    providers,
    log: { level: environment.LOG_LEVEL ?? file.log.level },
    audit: {
      ...file.audit,
      signingKey: environment.BRIGADE_AUDIT_SIGNING_KEY,
      signingKeyFile:
        mode.kind === 'embedded'
          ? resolve(dirname(mode.dataDir), 'audit-signing-key.pem')
          : undefined,
    },
    metrics: { token: environment.BRIGADE_METRICS_TOKEN },
    vault: {
      masterKey: environment.BRIGADE_MASTER_KEY,
      previousMasterKey: environment.BRIGADE_MASTER_KEY_PREVIOUS,
      masterKeyFile:
        mode.kind === 'embedded' ? resolve(dirname(mode.dataDir), 'master-key') : undefined,
      keyProvider:
        file.vault.keyProvider === undefined
          ? undefined
          : {
              module: /^\.{1,2}[\\/]/.test(file.vault.keyProvider.module)
                ? resolve(dirname(path), file.vault.keyProvider.module)
                : file.vault.keyProvider.module,
              options: file.vault.keyProvider.options,
            },
    },
    redisUrl: environment.REDIS_URL,
    operatorKey: environment.BRIGADE_OPERATOR_KEY,
    configPath:
      options.file === undefined &&
      (explicit !== undefined || Object.keys(raw as object).length > 0)
        ? path
        : undefined,
  };
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
