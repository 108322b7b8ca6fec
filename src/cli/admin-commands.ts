import type { z } from 'zod';
import { AppError, ValidationError } from '../domain/errors.ts';
import type { IdentityService } from '../domain/identity/identity-service.ts';
import type { Principal } from '../domain/identity/principal.ts';
import { toValidationError } from '../http/error-response.ts';
import {
  apiKeyResponse,
  createApiKeySchema,
  createTenantSchema,
  createUserSchema,
  tenantResponse,
  userResponse,
} from '../http/schemas.ts';
import { type CliIo, printTable, UsageError } from './cli-output.ts';

/** Parsed flags of one admin command. */
export type Flags = Readonly<Record<string, string | boolean | undefined>>;

const operator: Principal = { kind: 'operator' };

/** The command-line flag that sets a field of an API schema (`expiresAt` → `--expires-at`). */
function flagFor(field: string): string {
  if (field === 'displayName') return '--name';
  return `--${field.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}

/** The same problems, each naming the flag that set the field (`body.expiresAt` → `--expires-at`). */
function namingFlags(error: ValidationError): ValidationError {
  return new ValidationError(
    error.issues.map((issue) => {
      const parts = issue.path.split('.').filter((part) => part !== '');
      const [field = '', ...rest] = parts[0] === 'body' ? parts.slice(1) : parts;
      const item = rest.length === 0 ? '' : ` (item ${rest.map((part) => Number(part) + 1)})`;
      return { path: `${flagFor(field)}${item}`, message: issue.message };
    }),
  );
}

/** Validates flags with the API's schema ({@link runAdminCommand} names the flags). */
function parse<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw toValidationError('body', result.error.issues);
}

function required(flags: Flags, name: string): string {
  const value = flags[name];
  if (typeof value !== 'string' || value.length === 0) throw new UsageError(`missing --${name}`);
  return value;
}

function optional(flags: Flags, name: string): string | undefined {
  const value = flags[name];
  return typeof value === 'string' ? value : undefined;
}

/** A tenant by slug, or else by id (a slug may look like a UUID); it must exist. */
export async function resolveTenant(identity: IdentityService, reference: string): Promise<string> {
  for (let after: string | undefined; ; ) {
    const page = await identity.listTenants(operator, { limit: 100, after });
    const found = page.data.find((tenant) => tenant.slug === reference);
    if (found !== undefined) return found.id;
    if (page.nextCursor === null) break;
    after = page.nextCursor;
  }
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(reference)) {
    return (await identity.getTenant(operator, reference)).id;
  }
  throw new AppError('tenant_not_found', `no tenant with slug or id '${reference}'`);
}

/** A user of the tenant by id, or else by e-mail (case-insensitive); an e-mail must exist. */
export async function resolveUser(
  identity: IdentityService,
  tenantId: string,
  reference: string,
): Promise<string> {
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(reference))
    return reference;
  for (let after: string | undefined; ; ) {
    const page = await identity.listUsers(operator, tenantId, { limit: 100, after });
    const found = page.data.find((user) => user.email?.toLowerCase() === reference.toLowerCase());
    if (found !== undefined) return found.id;
    if (page.nextCursor === null)
      throw new AppError('user_not_found', `no user with e-mail '${reference}' in this tenant`);
    after = page.nextCursor;
  }
}

/** Every row of a paged listing, page after page (the API's pages hold at most 100). */
async function allPages<T>(
  page: (
    after: string | undefined,
  ) => Promise<{ readonly data: readonly T[]; readonly nextCursor: string | null }>,
): Promise<T[]> {
  const rows: T[] = [];
  for (let after: string | undefined; ; ) {
    const current = await page(after);
    rows.push(...current.data);
    if (current.nextCursor === null) return rows;
    after = current.nextCursor;
  }
}

function emit(output: { io: CliIo; json: boolean }, value: object, human: () => void): void {
  if (output.json) output.io.out(JSON.stringify(value, null, 2));
  else human();
}

/**
 * Runs one admin command (`tenants create|list`, `users create|list`,
 * `keys create|list|revoke`) as the platform operator, through the same services and
 * validation as the HTTP API.
 */
export async function runAdminCommand(options: AdminCommandOptions): Promise<void> {
  try {
    await runCommand(options);
  } catch (error) {
    // The services' own checks (a time zone PostgreSQL lacks, an expiry in the past) name
    // API fields too.
    throw error instanceof ValidationError ? namingFlags(error) : error;
  }
}

/** Options of {@link runAdminCommand}. */
export interface AdminCommandOptions {
  readonly identity: IdentityService;
  readonly command: string;
  readonly flags: Flags;
  readonly io: CliIo;
}

async function runCommand(options: AdminCommandOptions): Promise<void> {
  const { identity, command, flags, io } = options;
  const output = { io, json: flags['json'] === true };
  switch (command) {
    case 'tenants create': {
      const input = parse(createTenantSchema, {
        slug: required(flags, 'slug'),
        name: optional(flags, 'name') ?? required(flags, 'slug'),
        ...(optional(flags, 'time-zone') === undefined
          ? {}
          : { timeZone: optional(flags, 'time-zone') }),
      });
      const tenant = tenantResponse(await identity.createTenant(operator, input));
      emit(output, tenant, () => io.out(`created tenant ${tenant.slug} (${tenant.id})`));
      return;
    }
    case 'tenants list': {
      const tenants = (
        await allPages((after) => identity.listTenants(operator, { limit: 100, after }))
      ).map(tenantResponse);
      emit(output, tenants, () =>
        printTable(io, tenants, ['id', 'slug', 'name', 'status', 'createdAt']),
      );
      return;
    }
    case 'users create': {
      const tenantId = await resolveTenant(identity, required(flags, 'tenant'));
      const input = parse(createUserSchema, {
        email: optional(flags, 'email') ?? null,
        displayName: optional(flags, 'name') ?? null,
        ...(optional(flags, 'role') === undefined ? {} : { role: optional(flags, 'role') }),
      });
      const user = userResponse(await identity.createUser(operator, tenantId, input));
      emit(output, user, () =>
        io.out(`created user ${user.email ?? user.id} (${user.id}) with role ${user.role}`),
      );
      return;
    }
    case 'users list': {
      const tenantId = await resolveTenant(identity, required(flags, 'tenant'));
      const users = (
        await allPages((after) => identity.listUsers(operator, tenantId, { limit: 100, after }))
      ).map(userResponse);
      emit(output, users, () =>
        printTable(io, users, ['id', 'email', 'displayName', 'role', 'status']),
      );
      return;
    }
    case 'keys create': {
      const tenantId = await resolveTenant(identity, required(flags, 'tenant'));
      const userId = await resolveUser(identity, tenantId, required(flags, 'user'));
      const scopes = optional(flags, 'scopes');
      const input = parse(createApiKeySchema, {
        name: required(flags, 'name'),
        ...(scopes === undefined ? {} : { scopes: scopes.split(',').map((scope) => scope.trim()) }),
        ...(optional(flags, 'expires-at') === undefined
          ? {}
          : { expiresAt: optional(flags, 'expires-at') }),
      });
      const created = await identity.createApiKey(
        operator,
        { tenantId, userId },
        {
          name: input.name,
          scopes: input.scopes,
          expiresAt: input.expiresAt === undefined ? undefined : new Date(input.expiresAt),
        },
      );
      const shown = { ...apiKeyResponse(created.key), secret: created.secret };
      emit(output, shown, () => {
        io.out(`created key ${shown.name} (${shown.id})`);
        io.out(`secret (shown once): ${created.secret}`);
      });
      return;
    }
    case 'keys list': {
      const tenantId = await resolveTenant(identity, required(flags, 'tenant'));
      const userId = await resolveUser(identity, tenantId, required(flags, 'user'));
      const keys = (
        await allPages((after) =>
          identity.listApiKeys(operator, { tenantId, userId }, { limit: 100, after }),
        )
      ).map((key) => apiKeyResponse(key));
      emit(output, keys, () =>
        printTable(io, keys, ['id', 'name', 'prefix', 'status', 'expiresAt', 'lastUsedAt']),
      );
      return;
    }
    case 'keys revoke': {
      const tenantId = await resolveTenant(identity, required(flags, 'tenant'));
      const userId = await resolveUser(identity, tenantId, required(flags, 'user'));
      const key = apiKeyResponse(
        await identity.revokeApiKey(operator, { tenantId, userId, keyId: required(flags, 'key') }),
      );
      emit(output, key, () => io.out(`revoked key ${key.name} (${key.id})`));
      return;
    }
    default:
      throw new UsageError(`unknown command '${command}'; run 'brigade help'`);
  }
}
