/**
 * The contract of a key-provider plugin: where the credentials vault's master key lives when it
 * is not `BRIGADE_MASTER_KEY` (a KMS, an HSM, a secrets manager). Envelope style: Brigade hands
 * the provider each tenant's 32-byte data key to **wrap** and later to **unwrap**, and never
 * sees the master key itself, so a KMS can keep it inside its boundary. Versioned: breaking
 * changes get `key-provider-v2`.
 *
 * A module named by `vault.keyProvider.module` exports a function `createKeyProvider`
 * ({@link CreateKeyProviderV1}); Brigade calls it once at start-up with
 * `vault.keyProvider.options` and checks the provider with a wrap and unwrap round trip before
 * it accepts requests.
 */

/** What {@link KeyProviderV1.wrapKey} receives. */
export interface WrapKeyRequestV1 {
  /** The data key to protect (32 random bytes). Never log or persist it. */
  readonly plaintext: Uint8Array;
  /**
   * Additional authenticated data the wrapping must be bound to (`tenant-key:<tenantId>`):
   * unwrapping with another context must fail, so a wrapped key copied to another tenant's
   * row is useless. A KMS takes it as its encryption context / additional authenticated data.
   */
  readonly context: string;
}

/** What {@link KeyProviderV1.wrapKey} returns. */
export interface WrappedKeyV1 {
  /** The wrapped data key (opaque to Brigade, stored in `brigade.vault_tenant_keys`). At most 4 KiB. */
  readonly wrapped: Uint8Array;
  /**
   * The id of the master key that wrapped it, stored beside it and handed back to
   * {@link KeyProviderV1.unwrapKey}: 1–64 printable ASCII characters, not secret (a key
   * version, an ARN, a fingerprint). `brigade keys rotate-master` re-wraps every data key
   * whose id differs from the one the provider wraps with now.
   */
  readonly keyId: string;
}

/** What {@link KeyProviderV1.unwrapKey} receives. */
export interface UnwrapKeyRequestV1 {
  readonly wrapped: Uint8Array;
  /** The id {@link KeyProviderV1.wrapKey} returned with `wrapped`. */
  readonly keyId: string;
  /** The same context the key was wrapped with. */
  readonly context: string;
}

/**
 * A key provider. Both methods may be called concurrently, from inside a database
 * transaction (keep them fast; Brigade caches unwrapped tenant keys for a few minutes). Errors
 * they throw fail the operation; their messages are never shown to API clients, and must not
 * contain key material.
 */
export interface KeyProviderV1 {
  readonly specificationVersion: 'key-provider-v1';
  /** A short name for logs and errors (`aws-kms`, `vault-transit`…). */
  readonly id: string;
  /** Wraps a data key with the current master key. */
  wrapKey(request: WrapKeyRequestV1): Promise<WrappedKeyV1>;
  /**
   * Unwraps a data key wrapped by the master key `keyId` — the current one or an older one
   * still held (during a rotation). Throws when the key is unknown, or the context or a byte
   * is wrong.
   */
  unwrapKey(request: UnwrapKeyRequestV1): Promise<Uint8Array>;
  /** Releases clients and connections when Brigade stops. */
  close?(): Promise<void>;
}

/** What `createKeyProvider` receives. */
export interface KeyProviderFactoryOptionsV1 {
  /** `vault.keyProvider.options` from the configuration file, as written (JSON values). */
  readonly options: Readonly<Record<string, unknown>>;
}

/** The function a key-provider module exports under the name `createKeyProvider`. */
export type CreateKeyProviderV1 = (
  options: KeyProviderFactoryOptionsV1,
) => KeyProviderV1 | Promise<KeyProviderV1>;
