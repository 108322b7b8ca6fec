import { z } from 'zod';
import { modelRouteSchema } from '../gateway/route-schema.ts';
import { corsOriginSchema } from './cors-origin.ts';
import { limitsSchema } from './limits-schema.ts';

/** Log levels accepted by `log.level` (pino's names). */
export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const corsSchema = z
  .strictObject({
    /** Origins allowed to call the API from a browser; empty disables CORS headers. */
    origins: z.array(corsOriginSchema).default([]),
    /** Whether browsers may send credentials (cookies, Authorization) cross-origin. */
    credentials: z.boolean().default(false),
    /** How long browsers may cache a preflight answer, in seconds. */
    maxAgeSeconds: z.int().min(0).max(86_400).default(600),
  })
  .prefault({});

const serverSchema = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    /** TCP port; 0 picks a free one. */
    port: z.int().min(0).max(65_535).default(8080),
    /** Largest accepted request body in bytes; larger bodies get 413. */
    bodyLimitBytes: z
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    /** How often an open event stream authenticates its credential again, in milliseconds. */
    streamReauthMs: z.int().min(100).max(3_600_000).default(15_000),
    /** How long a graceful shutdown waits for in-flight requests, in milliseconds. */
    shutdownGraceMs: z.int().min(0).max(600_000).default(10_000),
    /** Time allowed to receive a whole request (Node's `requestTimeout`), in milliseconds. */
    requestTimeoutMs: z.int().min(100).max(600_000).default(30_000),
    /** Listen backlog (capped by net.core.somaxconn); Node's 511 reset bursts of clients. */
    listenBacklog: z.int().min(1).max(65_535).default(4096),
    cors: corsSchema,
  })
  .prefault({});

const embeddedSchema = z
  .strictObject({
    /** Directory that holds the embedded cluster, relative to the working directory. */
    dataDir: z.string().min(1).default('./.brigade/postgres'),
    /** Port for the embedded server; when omitted a free port is picked at every start. */
    port: z.int().min(1).max(65_535).optional(),
  })
  .prefault({});

const databaseSchema = z
  .strictObject({
    embedded: embeddedSchema,
    /** Name of the runtime role (not superuser, not BYPASSRLS, owns nothing). */
    runtimeRole: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier')
      .default('brigade_app'),
    /** Maximum connections in the runtime pool of one process. */
    poolSize: z.int().min(1).max(500).default(10),
    /** Server-side statement timeout for runtime queries, in milliseconds. */
    statementTimeoutMs: z.int().min(100).max(3_600_000).default(30_000),
    /** Apply pending migrations when the server starts. */
    migrateOnStart: z.boolean().default(true),
  })
  .prefault({});

const authSchema = z
  .strictObject({
    /** How often `last_used_at` of an API key is written at most, in milliseconds. */
    keyLastUsedWriteIntervalMs: z.int().min(0).max(86_400_000).default(60_000),
    /** How long fetched JWKS documents are cached, in milliseconds. */
    jwksCacheMs: z.int().min(0).max(86_400_000).default(600_000),
    /** Accepted clock skew when checking JWT `exp`/`nbf`, in seconds. */
    jwtClockToleranceSeconds: z.int().min(0).max(600).default(30),
    /**
     * Lets tenants' JWKS URLs reach private addresses, loopback included (an identity provider
     * on the internal network of a self-hosted deployment, or on localhost in development).
     */
    jwksAllowPrivateNetworks: z.boolean().default(false),
  })
  .prefault({});

const runsSchema = z
  .strictObject({
    /** Runs one process executes at once; 0 makes an API-only process that executes none. */
    concurrency: z.int().min(0).max(10_000).default(64),
    /** How often an idle scheduler looks for queued runs, in milliseconds (NOTIFY wakes it sooner). */
    pollIntervalMs: z.int().min(10).max(60_000).default(250),
    /** A run whose executor missed heartbeats this long is resumed by another process. */
    staleAfterMs: z.int().min(2_000).max(600_000).default(10_000),
    /** Runs of one tenant executing at once across all processes; 0 = unlimited. */
    maxConcurrentPerTenant: z.int().min(0).max(100_000).default(32),
    /** Runs of one user executing at once across all processes; 0 = unlimited. */
    maxConcurrentPerUser: z.int().min(0).max(100_000).default(8),
    /** Queued (not yet started) runs one tenant may have; more are refused with 429 queue_full. 0 = unlimited. */
    maxQueuedPerTenant: z.int().min(0).max(10_000_000).default(1_000),
    /**
     * How long a tool call waits for its user's approval, in seconds (default 24 h). Past it the
     * approval is `expired`: the call is refused (`approval_expired`) and the run goes on.
     */
    approvalTtlSeconds: z
      .int()
      .min(1)
      .max(30 * 86_400)
      .default(86_400),
    /** How often each process looks for approvals past their expiry, in milliseconds. */
    approvalSweepMs: z.int().min(50).max(600_000).default(10_000),
  })
  .prefault({});

const memorySchema = z
  .strictObject({
    /**
     * Memory entries one user may hold across thread and long-term memory; a core's write of
     * one more fails with `memory_limit_exceeded`.
     */
    maxEntriesPerUser: z.int().min(1).max(1_000_000).default(1_000),
  })
  .prefault({});

const priceSchema = z.strictObject({
  inputPerMTok: z.number().min(0).max(100_000),
  outputPerMTok: z.number().min(0).max(100_000),
  /** Price of cached input tokens (defaults to the input price). */
  cachedInputPerMTok: z.number().min(0).max(100_000).optional(),
});

const modelsSchema = z
  .strictObject({
    local: z
      .strictObject({
        /** Pause between tokens streamed by the built-in local model, in milliseconds. */
        tokenDelayMs: z.int().min(0).max(10_000).default(0),
      })
      .prefault({}),
    /**
     * Prices in USD per million tokens, by model id (`gpt-4o`) or `<provider>:<model id>`: a key
     * covers the id, its dated variants, or every id it begins when it ends in `:`, `/` or `-`;
     * the most specific wins (see gateway/pricing.ts). Overrides and extends the built-in table.
     */
    prices: z.record(z.string().min(1).max(200), priceSchema).default({}),
    /** Price of a model found in no table; budgets need one, so it errs on the expensive side. */
    unknownModelPrice: priceSchema.prefault({ inputPerMTok: 10, outputPerMTok: 30 }),
  })
  .prefault({});

const providerSchema = z.strictObject({
  /** `openai`, `anthropic`, or any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, LM Studio, OpenRouter). */
  type: z.enum(['openai', 'anthropic', 'openai-compatible']),
  /** Base URL of the API (required for openai-compatible). */
  baseUrl: z.url().optional(),
  /** Name of the environment variable holding the API key (keys never go in this file). */
  apiKeyEnv: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name')
    .optional(),
  /** Extra headers sent with every request. */
  headers: z.record(z.string(), z.string()).optional(),
});

const environmentName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name');

const mcpStdioServerSchema = z
  .strictObject({
    /** The executable (absolute, or found on the child's PATH); run without a shell. */
    command: z.string().min(1).max(4_096),
    args: z.array(z.string().max(4_096)).max(256).default([]),
    /**
     * The child's environment (never secrets: this file is not a vault). Nothing of Brigade's
     * own environment is passed except PATH, which is added unless set here.
     */
    env: z.record(environmentName, z.string().max(32_768)).default({}),
    /** Working directory of the process (relative to Brigade's). */
    cwd: z.string().min(1).optional(),
    /** Variable that carries the calling user's credential (the vault secret the server's `auth` names). */
    credentialEnv: environmentName.optional(),
    /** Time to start and list tools, and per tool call, in milliseconds. */
    timeoutMs: z.int().min(100).max(600_000).default(30_000),
    /** A process unused this long is stopped, in milliseconds. */
    idleMs: z.int().min(100).max(86_400_000).default(300_000),
    /** Processes of this server at once (one per tenant, user and registration). */
    maxProcesses: z.int().min(1).max(10_000).default(16),
  })
  .refine(
    (server) => server.credentialEnv === undefined || !(server.credentialEnv in server.env),
    'credentialEnv must not also be set in env',
  );

/** Kinds of personal data the output guard can redact (as in runtime/tools/pii-redaction.ts). */
const piiKinds = ['email', 'phone', 'iban', 'card', 'ssn'] as const;

const toolsSchema = z
  .strictObject({
    httpRequest: z
      .strictObject({
        /** Hosts (`host` or `host:port`) the built-in http_request tool may call. */
        allowedHosts: z.array(z.string().min(1)).default([]),
        allowedMethods: z.array(z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])).default(['GET']),
        maxResponseChars: z.int().min(1).max(1_000_000).default(16_384),
        timeoutMs: z.int().min(100).max(120_000).default(10_000),
      })
      .prefault({}),
    /** HTTP tools tenant admins define over the API (`/v1/tools`). */
    tenantHttp: z
      .strictObject({
        /** Hosts (`host` or `host:port`) tenant tools may call; empty allows any public host. */
        allowedHosts: z.array(z.string().min(1)).default([]),
        /**
         * Allow private, loopback and link-local addresses (refused by default: a tool must not
         * reach the internal network). For tests and single-machine setups only.
         */
        allowPrivateNetworks: z.boolean().default(false),
        /** Largest timeout a tool definition may ask for, in milliseconds. */
        maxTimeoutMs: z.int().min(100).max(120_000).default(30_000),
        /** Largest response a tool definition may ask to keep, in characters. */
        maxResponseChars: z.int().min(1).max(1_000_000).default(65_536),
      })
      .prefault({}),
    /**
     * Stdio MCP servers the operator allows (tenants' admins register them by name; they
     * never choose a command). Each process serves one (tenant, user, server).
     */
    mcpStdio: z
      .strictObject({
        /** Processes of all stdio servers at once; the least recently used idle one is closed first. */
        maxProcesses: z.int().min(1).max(10_000).default(64),
        servers: z
          .record(
            z
              .string()
              .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a lower-case letter, then a-z, 0-9, _ or -'),
            mcpStdioServerSchema,
          )
          .default({}),
      })
      .prefault({}),
    /** The output guard on final assistant text (redaction, link and image blocking). */
    outputGuard: z
      .strictObject({
        /** Hosts markdown links and images may point to; others are replaced. */
        allowedLinkHosts: z.array(z.string().min(1)).default([]),
        /**
         * Personal data replaced in answers with `[redacted:<kind>]`: a list of kinds, `true`
         * (all) or `false` (none). Default: card numbers and US social security numbers.
         */
        redactPii: z
          .union([z.boolean(), z.array(z.enum(piiKinds)).max(piiKinds.length)])
          .transform((value) =>
            value === true ? [...piiKinds] : value === false ? [] : [...new Set(value)],
          )
          .default(['card', 'ssn']),
      })
      .prefault({}),
  })
  .prefault({});

const auditSchema = z
  .strictObject({
    /** Signed checkpoints of every tenant's audit chain (needs a signing key; see docs/observability.md). */
    checkpoints: z
      .strictObject({
        /** A checkpoint is written once this many events are not covered by one. */
        everyEvents: z.int().min(1).max(10_000_000).default(1_000),
        /** ...or once the newest event is older than this and not covered, in seconds. */
        intervalSeconds: z.int().min(1).max(86_400).default(300),
        /** How often the background job looks for tenants that are due, in milliseconds. */
        pollMs: z.int().min(100).max(3_600_000).default(10_000),
      })
      .prefault({}),
  })
  .prefault({});

const webhooksSchema = z
  .strictObject({
    /** Allow webhook URLs on private, loopback and link-local addresses (tests; private networks). */
    allowPrivateNetworks: z.boolean().default(false),
    /** Time a receiver has to answer one delivery, in milliseconds. */
    timeoutMs: z.int().min(100).max(60_000).default(5_000),
    /** Attempts before a delivery is marked failed. */
    maxAttempts: z.int().min(1).max(50).default(8),
    /** Delays before retries, in milliseconds (the last repeats; ±20 % jitter). */
    retryDelaysMs: z
      .array(z.int().min(10).max(86_400_000))
      .min(1)
      .default([5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 7_200_000]),
    /** How often each process looks for due deliveries, in milliseconds. */
    pollMs: z.int().min(50).max(60_000).default(1_000),
    /** Webhooks one tenant may have (each event is delivered to every one of them). */
    maxPerTenant: z.int().min(1).max(10_000).default(25),
  })
  .prefault({});

const tracingSchema = z
  .strictObject({
    /** Share of traces recorded (0–1), in the span store and the exporter alike. */
    sampleRatio: z.number().min(0).max(1).default(1),
    /** OTLP/HTTP traces endpoint of a collector (`http://collector:4318/v1/traces`). */
    otlpEndpoint: z.url().optional(),
    /** `id`: spans carry the user id; `pseudonym`: a hash of tenant and user instead. */
    userAttribute: z.enum(['id', 'pseudonym']).default('id'),
    /** Keep user spans in PostgreSQL so `getRunTrace` can show them. */
    store: z.boolean().default(true),
    /** Spans older than this are deleted from the span store, in hours. */
    retentionHours: z
      .int()
      .min(1)
      .max(24 * 365)
      .default(72),
  })
  .prefault({});

const vaultSchema = z
  .strictObject({
    /**
     * A key-provider plugin (`KeyProviderV1`) that wraps the vault's tenant data keys instead
     * of `BRIGADE_MASTER_KEY` (a KMS). Absent: the environment variable (or, embedded, the
     * key file).
     */
    keyProvider: z
      .strictObject({
        /** A path (relative to the configuration file) or a package name; exports `createKeyProvider`. */
        module: z.string().min(1).max(4_096),
        /** Handed to `createKeyProvider` as is (not secrets: this file is not a vault). */
        options: z.record(z.string(), z.unknown()).default({}),
      })
      .optional(),
  })
  .prefault({});

/** How long bookkeeping rows are kept once they no longer matter (the maintenance sweep). */
const retentionSchema = z
  .strictObject({
    /** How often each process resolves expired reservations and deletes what is past retention, in milliseconds. */
    sweepMs: z.int().min(1_000).max(3_600_000).default(30_000),
    /** Resolved budget reservations are deleted this many days after they were resolved. */
    reservationDays: z.int().min(1).max(3_650).default(30),
    /**
     * Limit counters of past periods (and the announced budget alerts of those periods) are
     * deleted this many days after the period began; at least 91, the longest rolling window
     * being 90 days.
     */
    limitCounterDays: z.int().min(91).max(3_650).default(100),
    /** Delivered and failed webhook deliveries are deleted this many days after they were queued. */
    webhookDeliveryDays: z.int().min(1).max(3_650).default(30),
  })
  .prefault({});

const logSchema = z
  .strictObject({
    level: z.enum(logLevels).default('info'),
  })
  .prefault({});

/** Schema of `brigade.config.json`; every key is optional and has a documented default. */
export const configFileSchema = z.strictObject({
  $schema: z.string().optional(),
  server: serverSchema,
  database: databaseSchema,
  auth: authSchema,
  runs: runsSchema,
  memory: memorySchema,
  models: modelsSchema,
  /** Model providers by name; agents name a model as `<provider>:<model id>`. */
  providers: z
    .record(
      z
        .string()
        .regex(/^[a-z][a-z0-9-]{0,31}$/, 'a lower-case letter, then lower-case letters, digits, -'),
      providerSchema,
    )
    .refine((value) => !('local' in value), 'the name local is reserved for the built-in model')
    .default({}),
  /** Platform model routes: names every tenant can use as a model (tenants add their own over the API). */
  routes: z
    .array(modelRouteSchema)
    .max(1_000)
    .default([])
    .refine(
      (routes) => new Set(routes.map((route) => route.name)).size === routes.length,
      'route names must be unique',
    ),
  tools: toolsSchema,
  limits: limitsSchema,
  webhooks: webhooksSchema,
  tracing: tracingSchema,
  retention: retentionSchema,
  audit: auditSchema,
  vault: vaultSchema,
  log: logSchema,
});

/** The parsed config file. */
export type ConfigFile = z.infer<typeof configFileSchema>;
