import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type MasterKeys,
  masterKeyFor,
  open,
  seal,
  type VaultKey,
} from '../domain/tools/vault-crypto.ts';
import type { CreateKeyProviderV1, KeyProviderV1 } from '../plugin-api/index.ts';
import { loadMasterKeys } from './master-key.ts';

/**
 * A key-provider plugin that could not be loaded or failed its check. The message is one
 * line naming the module and what failed; it never carries the provider's own error message
 * (which may echo credentials or key material), only the error's name and code.
 */
export class KeyProviderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyProviderError';
  }
}

/** The vault's key provider and the id of the master key it wraps with now. */
export interface VaultKeySource {
  readonly provider: KeyProviderV1;
  /** The current master key's id (from a wrap at start-up). */
  readonly keyId: string;
  /** Where the master key comes from. */
  readonly source: 'environment' | 'key-file' | 'plugin';
}

/**
 * The built-in provider over master keys this process holds (`BRIGADE_MASTER_KEY`, the
 * previous one, or the embedded key file): AES-256-GCM with the key's fingerprint as its id,
 * the format every vault row had before plugins existed.
 */
export function createLocalKeyProvider(keys: MasterKeys): KeyProviderV1 {
  return {
    specificationVersion: 'key-provider-v1',
    id: 'environment',
    wrapKey: ({ plaintext, context }) =>
      Promise.resolve({
        wrapped: seal(keys.current.key, Buffer.from(plaintext), context),
        keyId: keys.current.id,
      }),
    unwrapKey: ({ wrapped, keyId, context }) =>
      Promise.resolve(open(masterKeyFor(keys, keyId).key, Buffer.from(wrapped), context)),
  };
}

/**
 * A plugin provider that also unwraps what `previous` (`BRIGADE_MASTER_KEY_PREVIOUS`) wrapped:
 * the way from the environment variable to a plugin (then `brigade keys rotate-master`).
 */
function withPreviousKey(provider: KeyProviderV1, previous: VaultKey): KeyProviderV1 {
  return {
    specificationVersion: 'key-provider-v1',
    id: provider.id,
    wrapKey: (request) => provider.wrapKey(request),
    unwrapKey: (request) =>
      request.keyId === previous.id
        ? Promise.resolve(open(previous.key, Buffer.from(request.wrapped), request.context))
        : provider.unwrapKey(request),
    ...(provider.close === undefined
      ? {}
      : { close: () => provider.close?.() ?? Promise.resolve() }),
  };
}

/**
 * A plugin provider whose failures are {@link KeyProviderError}s naming the operation, the
 * error's name and code only: a provider's message can echo credentials, and a failed unwrap
 * reaches logs and a tool's error.
 */
function sanitized(provider: KeyProviderV1): KeyProviderV1 {
  const guard =
    (operation: string) =>
    (error: unknown): never => {
      throw new KeyProviderError(
        `key provider ${provider.id}: ${operation} failed (${describe(error)})`,
      );
    };
  return {
    specificationVersion: 'key-provider-v1',
    id: provider.id,
    wrapKey: async (request) => {
      const result = await provider.wrapKey(request).catch(guard('wrapKey'));
      if (!(result?.wrapped instanceof Uint8Array) || typeof result.keyId !== 'string')
        throw new KeyProviderError(`key provider ${provider.id}: wrapKey returned a bad value`);
      return result;
    },
    unwrapKey: (request) => provider.unwrapKey(request).catch(guard('unwrapKey')),
    ...(provider.close === undefined
      ? {}
      : { close: () => (provider.close?.() ?? Promise.resolve()).catch(() => undefined) }),
  };
}

function describe(error: unknown): string {
  const name = error instanceof Error ? error.name : typeof error;
  const code = (error as { code?: unknown } | null)?.code;
  const safeCode =
    typeof code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? ` ${code}` : '';
  return `${/^[A-Za-z0-9_]{1,64}$/.test(name) ? name : 'Error'}${safeCode}`;
}

async function importProvider(specifier: string): Promise<CreateKeyProviderV1> {
  const target = isAbsolute(specifier) ? pathToFileURL(specifier).href : specifier;
  let loaded: Record<string, unknown>;
  try {
    loaded = (await import(target)) as Record<string, unknown>;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new KeyProviderError(
      code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
        ? `vault.keyProvider: module ${specifier} not found`
        : `vault.keyProvider: module ${specifier} failed to load (${describe(error)})`,
    );
  }
  const factory = loaded['createKeyProvider'];
  if (typeof factory !== 'function')
    throw new KeyProviderError(
      `vault.keyProvider: module ${specifier} does not export a function createKeyProvider`,
    );
  return factory as CreateKeyProviderV1;
}

/** Checks a provider's shape and that it wraps and unwraps a random key; returns the key id. */
export async function checkKeyProvider(provider: KeyProviderV1, label: string): Promise<string> {
  const fail = (what: string) => new KeyProviderError(`vault.keyProvider ${label}: ${what}`);
  if (
    provider === null ||
    typeof provider !== 'object' ||
    provider.specificationVersion !== 'key-provider-v1' ||
    typeof provider.id !== 'string' ||
    !/^[A-Za-z0-9_.:/-]{1,64}$/.test(provider.id) ||
    typeof provider.wrapKey !== 'function' ||
    typeof provider.unwrapKey !== 'function'
  )
    throw fail(
      "createKeyProvider did not return a 'key-provider-v1' provider (an id of 1 to 64 characters, wrapKey, unwrapKey)",
    );
  const probe = randomBytes(32);
  const context = 'brigade-key-provider-check';
  let wrapped: Awaited<ReturnType<KeyProviderV1['wrapKey']>>;
  try {
    wrapped = await provider.wrapKey({ plaintext: new Uint8Array(probe), context });
  } catch (error) {
    throw fail(`wrapKey failed (${describe(error)}; the provider's message is not shown)`);
  }
  if (
    !(wrapped?.wrapped instanceof Uint8Array) ||
    wrapped.wrapped.length === 0 ||
    wrapped.wrapped.length > 4_096
  )
    throw fail('wrapKey must return { wrapped: Uint8Array of 1 to 4096 bytes, keyId }');
  if (typeof wrapped.keyId !== 'string' || !/^[\x21-\x7e]{1,64}$/.test(wrapped.keyId))
    throw fail('wrapKey must return a keyId of 1 to 64 printable ASCII characters');
  let unwrapped: Uint8Array;
  try {
    unwrapped = await provider.unwrapKey({
      wrapped: wrapped.wrapped,
      keyId: wrapped.keyId,
      context,
    });
  } catch (error) {
    throw fail(`unwrapKey failed (${describe(error)}; the provider's message is not shown)`);
  }
  if (
    !(unwrapped instanceof Uint8Array) ||
    unwrapped.length !== 32 ||
    !timingSafeEqual(Buffer.from(unwrapped), probe)
  )
    throw fail('unwrapKey did not return the key wrapKey was given');
  return wrapped.keyId;
}

/**
 * Loads the vault's key source: the plugin named by `vault.keyProvider` (imported, created with
 * its options and checked with a wrap and unwrap round trip), else `BRIGADE_MASTER_KEY` (and
 * `BRIGADE_MASTER_KEY_PREVIOUS`), else in embedded mode the key file. Undefined when there is
 * none (the vault is then unavailable). Every failure is one line without secrets.
 */
export async function loadVaultKeySource(options: {
  readonly vault: {
    readonly masterKey: string | undefined;
    readonly previousMasterKey: string | undefined;
    readonly masterKeyFile: string | undefined;
    readonly keyProvider:
      | { readonly module: string; readonly options: Readonly<Record<string, unknown>> }
      | undefined;
  };
  /** Generate the embedded key file when it is missing (false for the CLI). */
  readonly generate?: boolean;
}): Promise<VaultKeySource | undefined> {
  const { vault } = options;
  if (vault.keyProvider === undefined) {
    const keys = await loadMasterKeys({
      configured: vault.masterKey,
      previous: vault.previousMasterKey,
      keyFile: vault.masterKeyFile,
      ...(options.generate === undefined ? {} : { generate: options.generate }),
    });
    if (keys === undefined) return undefined;
    return {
      provider: createLocalKeyProvider(keys),
      keyId: keys.current.id,
      source: vault.masterKey === undefined ? 'key-file' : 'environment',
    };
  }
  const previous = await loadMasterKeys({
    configured: vault.previousMasterKey,
    previous: undefined,
    keyFile: undefined,
  });
  const specifier = vault.keyProvider.module;
  const factory = await importProvider(specifier);
  let created: KeyProviderV1;
  try {
    created = await factory({ options: vault.keyProvider.options });
  } catch (error) {
    throw new KeyProviderError(
      `vault.keyProvider ${specifier}: createKeyProvider failed (${describe(error)}; the provider's message is not shown)`,
    );
  }
  let keyId: string;
  try {
    keyId = await checkKeyProvider(created, specifier);
  } catch (error) {
    await created?.close?.().catch(() => undefined);
    throw error;
  }
  const provider = sanitized(created);
  return {
    provider: previous === undefined ? provider : withPreviousKey(provider, previous.current),
    keyId,
    source: 'plugin',
  };
}
