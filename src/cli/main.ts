import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type Config, loadConfig, processEnvironment } from '../config/index.ts';
import {
  type AuditVerifier,
  createAuditSigner,
  createAuditVerifier,
} from '../domain/audit/audit-signing.ts';
import { createIdentityService } from '../domain/identity/identity-service.ts';
import { createBrigade, version } from '../main.ts';
import { createLogger, type Logger } from '../observability/index.ts';
import { loadAuditSigningKey } from '../storage/audit-signing-key.ts';
import { createAuditStore } from '../storage/identity/audit-store.ts';
import { createIdentityStore } from '../storage/identity/identity-store.ts';
import { openStorage } from '../storage/open-storage.ts';
import { createCredentialStore } from '../storage/tools/credential-store.ts';
import { loadVaultKeySource } from '../storage/vault-key-provider.ts';
import { createMockModelServer, type MockFault, parseMockFaults } from '../testing/index.ts';
import { resolveTenant, resolveUser, runAdminCommand } from './admin-commands.ts';
import { type CliIo, describeFailure, UsageError } from './cli-output.ts';
import { required, usageReport } from './usage-command.ts';
import { deleteUserCommand } from './user-erasure-command.ts';

const help = `brigade ${version}: a multi-tenant harness for LLM agents

Usage: brigade <command> [options]

Commands:
  serve                         start the server (embedded PostgreSQL unless DATABASE_URL is set)
  migrate                       apply pending database migrations and exit
  mock-model [--port N] [--fault JSON]
                                serve the mock OpenAI-compatible model (tests, demos, benchmarks)
  tenants create --slug S [--name N] [--time-zone TZ]
  tenants list
  users create --tenant T [--email E] [--name N] [--role owner|admin|member|viewer]
  users list --tenant T
  users delete --tenant T --user U --yes [--reason R]
                                erase the user and everything that is theirs (irreversible:
                                refused without --yes; usage records and audit events are kept)
  keys create --tenant T --user U --name N [--scopes a,b] [--expires-at ISO]
  keys list --tenant T --user U
  keys revoke --tenant T --user U --key K
  keys rotate-master            re-wrap every tenant's vault data key with BRIGADE_MASTER_KEY
                                (set the old key as BRIGADE_MASTER_KEY_PREVIOUS; servers keep
                                serving with both set; see docs/tools.md)
  usage report --tenant T [--from ISO] [--to ISO] [--group-by day,user,agent,key,route,model,provider,source]
               [--user U] [--csv]
                                model usage and cost of a tenant (default: the last 30 days by day)
  audit verify --tenant T [--public-key FILE]
                                check the tenant's audit hash chain and signed checkpoints
                                (exit 1 when broken); the key defaults to the configured one

  T is a tenant id or slug, U a user id or e-mail.

Options:
  --config PATH                 configuration file, JSON or YAML (.yaml, .yml) (default
                                ./brigade.config.json, .yaml or .yml)
  --json                        machine-readable output
  -h, --help, help              this help
  --version                     the version
`;

const knownCommands = [
  'serve',
  'migrate',
  'mock-model',
  'tenants create',
  'tenants list',
  'users create',
  'users list',
  'users delete',
  'keys create',
  'keys list',
  'keys revoke',
  'keys rotate-master',
  'audit verify',
  'usage report',
];

const options = {
  config: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  slug: { type: 'string' },
  name: { type: 'string' },
  'time-zone': { type: 'string' },
  tenant: { type: 'string' },
  email: { type: 'string' },
  role: { type: 'string' },
  user: { type: 'string' },
  scopes: { type: 'string' },
  'expires-at': { type: 'string' },
  key: { type: 'string' },
  port: { type: 'string' },
  fault: { type: 'string' },
  'public-key': { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  'group-by': { type: 'string' },
  csv: { type: 'boolean' },
  yes: { type: 'boolean' },
  reason: { type: 'string' },
} as const;

function parse(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (error) {
    // Node's message for an unknown option goes on about positionals after `--`, which no
    // command takes.
    const unknown = /^Unknown option '([^']+)'/.exec((error as Error).message);
    throw new UsageError(
      unknown === null
        ? (error as Error).message
        : `unknown option '${unknown[1]}'; run 'brigade help'`,
    );
  }
}

async function serve(config: Config, logger: Logger, io: CliIo): Promise<void> {
  const brigade = await createBrigade({ config, logger });
  let url: string;
  try {
    url = await brigade.listen();
  } catch (error) {
    // Nothing may outlive a failed start: stop the scheduler and the embedded database.
    await brigade.stop().catch(() => undefined);
    throw error;
  }
  io.out(`Brigade ${version} is listening on ${url}`);
  io.out(`  API reference: ${url}/docs   (OpenAPI: ${url}/openapi.json)`);
  if (brigade.generatedOperatorKey !== undefined) {
    io.out('');
    io.out('  A platform operator key was generated. It is shown only this once; store it now:');
    io.out(`    ${brigade.generatedOperatorKey}`);
    io.out('');
  } else if (config.operatorKey === undefined) {
    io.out(
      '  Authenticate with the operator key printed at first start, or set BRIGADE_OPERATOR_KEY.',
    );
  } else {
    io.out('  Authenticate with the key in BRIGADE_OPERATOR_KEY.');
  }
  io.out(`  Try: curl -H "Authorization: Bearer <operator key>" ${url}/v1/me`);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down');
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      brigade
        .stop()
        .catch((error: unknown) =>
          logger.error({ err: { message: (error as Error).message } }, 'shutdown failed'),
        )
        .finally(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

async function serveMockModel(
  flags: { readonly port?: string | undefined; readonly fault?: string | undefined },
  io: CliIo,
): Promise<void> {
  const port = flags.port === undefined ? 0 : Number.parseInt(flags.port, 10);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new UsageError('--port must be a port number');
  let faults: readonly MockFault[] | undefined;
  if (flags.fault !== undefined) {
    const parsed = parseMockFaults(flags.fault);
    if (parsed instanceof Error)
      throw new UsageError(
        `--fault: ${parsed.message} (e.g. {"status":503} or {"failRate":0.5,"fault":{"status":503}})`,
      );
    faults = parsed;
  }
  const mock = await createMockModelServer({ port, ...(faults === undefined ? {} : { faults }) });
  io.out(`mock model listening on ${mock.url} (OpenAI chat completions; model "mock-model")`);
  await new Promise<void>((resolve) => {
    const onSignal = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      mock.close().then(resolve, resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** The key checkpoints are checked with: `--public-key FILE`, else the configured signing key. */
async function auditVerifier(
  config: Config,
  publicKeyFile: string | undefined,
): Promise<AuditVerifier | undefined> {
  if (publicKeyFile !== undefined) {
    try {
      return createAuditVerifier(await readFile(publicKeyFile, 'utf8'));
    } catch (error) {
      throw new UsageError(`--public-key: ${(error as Error).message}`);
    }
  }
  const key = await loadAuditSigningKey({
    configured: config.audit.signingKey,
    keyFile: config.audit.signingKeyFile,
    generate: false,
  });
  return key === undefined ? undefined : createAuditSigner(key);
}

/** Runs the CLI with `argv` (without node and script); returns the exit status. */
export async function runCli(
  argv: readonly string[],
  io: CliIo,
  env: Readonly<Record<string, string | undefined>>,
): Promise<number> {
  let logger: Logger | undefined;
  try {
    const parsed = parse(argv);
    const [command, subcommand] = parsed.positionals;
    if (parsed.values.version === true) {
      io.out(version);
      return 0;
    }
    if (parsed.values.help === true || command === undefined || command === 'help') {
      io.out(help);
      return command === undefined && parsed.values.help !== true ? 2 : 0;
    }
    const full = ['serve', 'migrate', 'mock-model'].includes(command)
      ? command
      : `${command} ${subcommand ?? ''}`.trim();
    if (!knownCommands.includes(full)) {
      const subcommands = knownCommands
        .filter((known) => known.startsWith(`${command} `))
        .map((known) => known.slice(command.length + 1));
      if (subcommand === undefined && subcommands.length > 0)
        throw new UsageError(`'${command}' needs a subcommand: ${subcommands.join(', ')}`);
      throw new UsageError(`unknown command '${full}'; run 'brigade help'`);
    }
    const extra = parsed.positionals[full.split(' ').length];
    if (extra !== undefined)
      throw new UsageError(`unexpected argument '${extra}'; run 'brigade help'`);
    if (command === 'mock-model') {
      await serveMockModel(parsed.values, io);
      return 0;
    }
    const config = loadConfig({
      configPath: parsed.values.config,
      env,
      requireProviderKeys: command === 'serve',
    });
    logger = createLogger({
      level: config.log.level,
      ...(command === 'serve' ? {} : { destination: process.stderr }),
    });
    if (command === 'serve') {
      await serve(config, logger, io);
      return 0;
    }
    const storage = await openStorage({
      config,
      logger,
      ...(command === 'migrate' ? { migrate: true } : {}),
      shareRunning: true,
    });
    try {
      if (command === 'migrate') {
        const applied = storage.appliedMigrations;
        if (parsed.values.json === true) io.out(JSON.stringify({ applied }));
        else
          io.out(applied.length === 0 ? 'database is up to date' : `applied ${applied.join(', ')}`);
        return 0;
      }
      if (full === 'keys rotate-master') {
        const vaultKeys = await loadVaultKeySource({ vault: config.vault, generate: false });
        if (vaultKeys === undefined)
          throw new UsageError('no master key: set BRIGADE_MASTER_KEY or vault.keyProvider');
        let result: Awaited<ReturnType<ReturnType<typeof createCredentialStore>['rotateMaster']>>;
        try {
          result = await createCredentialStore({
            database: storage.database,
            keyProvider: vaultKeys.provider,
          }).rotateMaster();
        } finally {
          await vaultKeys.provider.close?.().catch(() => undefined);
        }
        if (parsed.values.json === true) io.out(JSON.stringify(result));
        else
          io.out(
            `re-wrapped ${result.rewrapped} of ${result.total} tenant data keys with master key ${result.keyId}`,
          );
        return 0;
      }
      const identity = createIdentityService({
        store: createIdentityStore(storage.database, config.limits.perTenant),
      });
      if (full === 'usage report') {
        const tenantId = await resolveTenant(identity, required(parsed.values.tenant, 'tenant'));
        const user = parsed.values.user;
        await usageReport({
          database: storage.database,
          tenantId,
          userId: user === undefined ? undefined : await resolveUser(identity, tenantId, user),
          flags: parsed.values,
          io,
        });
        return 0;
      }
      if (full === 'users delete') {
        await deleteUserCommand({ config, storage, identity, flags: parsed.values, io, logger });
        return 0;
      }
      if (full === 'audit verify') {
        const tenant = parsed.values.tenant;
        if (tenant === undefined) throw new UsageError('missing --tenant');
        const tenantId = await resolveTenant(identity, tenant);
        const verifier = await auditVerifier(config, parsed.values['public-key']);
        const result = await createAuditStore(storage.database, { verifier }).verify(
          { kind: 'operator' },
          tenantId,
        );
        if (parsed.values.json === true) io.out(JSON.stringify(result));
        else if (result.ok)
          io.out(
            `audit chain intact: ${result.checked} events, ${result.checkpoints.checked} signed checkpoints${result.publicKey === null ? '' : ` (key ${result.publicKey.keyId})`}`,
          );
        else io.out(`audit chain broken at event ${result.firstBrokenSeq}: ${result.reason}`);
        return result.ok ? 0 : 1;
      }
      await runAdminCommand({
        identity,
        command: `${command} ${subcommand ?? ''}`.trim(),
        flags: parsed.values,
        io,
      });
      return 0;
    } finally {
      await storage.close();
    }
  } catch (error) {
    const failure = describeFailure(error);
    io.err(`brigade: ${failure.message}`);
    logger?.debug(
      { err: { message: (error as Error).message, stack: (error as Error).stack } },
      'command failed',
    );
    return failure.status;
  } finally {
    logger?.flush();
  }
}

/** Runs the CLI on the process's arguments and sets the exit code. */
export function main(): Promise<void> {
  const io: CliIo = {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
  };
  return runCli(process.argv.slice(2), io, processEnvironment()).then(
    (status) => {
      process.exitCode = status;
    },
    (error: unknown) => {
      process.stderr.write(`brigade: ${(error as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}

const isEntryPoint =
  process.argv[1] !== undefined && /cli[\\/]main\.(ts|js)$/.test(process.argv[1]);
if (isEntryPoint) await main();
