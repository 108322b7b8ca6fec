import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';

/** The fields of an audit checkpoint that its Ed25519 signature covers. */
export interface CheckpointFields {
  readonly tenantId: string;
  /** Sequence number of the last event the checkpoint covers. */
  readonly seq: number;
  /** That event's chain hash, lower-case hex. */
  readonly hash: string;
  readonly signedAt: Date;
  readonly keyId: string;
}

/**
 * The exact bytes a checkpoint signature covers, one field a line, so anyone holding the
 * public key can check a checkpoint offline (docs/observability.md shows how).
 */
export function checkpointMessage(fields: CheckpointFields): Buffer {
  return Buffer.from(
    [
      'brigade-audit-checkpoint-v1',
      fields.tenantId,
      String(fields.seq),
      fields.hash,
      fields.signedAt.toISOString(),
      fields.keyId,
    ].join('\n'),
    'utf8',
  );
}

/** Identifies a public key: the first 16 hex digits of the SHA-256 of its SPKI DER encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

/** The public half of the audit signing key, as `GET /v1/audit/public-key` publishes it. */
export interface AuditPublicKey {
  readonly algorithm: 'Ed25519';
  readonly keyId: string;
  /** SPKI PEM. */
  readonly publicKeyPem: string;
}

/** Checks checkpoint signatures with one trusted public key. */
export interface AuditVerifier {
  readonly publicKey: AuditPublicKey;
  /** True when `signature` is this key's signature over the checkpoint's fields. */
  verify(fields: CheckpointFields, signature: Buffer): boolean;
}

/** Signs checkpoints; holds the private key, which is never logged or stored in the database. */
export interface AuditSigner extends AuditVerifier {
  sign(fields: Omit<CheckpointFields, 'keyId'>): { keyId: string; signature: Buffer };
}

/** A verifier for an Ed25519 public key (PEM, or a KeyObject). */
export function createAuditVerifier(publicKey: KeyObject | string): AuditVerifier {
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('the audit key must be an Ed25519 key');
  const published: AuditPublicKey = {
    algorithm: 'Ed25519',
    keyId: keyIdOf(key),
    publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString(),
  };
  return {
    publicKey: published,
    verify(fields, signature) {
      if (fields.keyId !== published.keyId) return false;
      try {
        return verify(null, checkpointMessage(fields), key, signature);
      } catch {
        return false;
      }
    },
  };
}

/**
 * Parses an Ed25519 private key given as PKCS#8 PEM or as base64 of PKCS#8 DER (the forms
 * `BRIGADE_AUDIT_SIGNING_KEY` accepts). The error never repeats the key.
 */
export function parseSigningKey(text: string): KeyObject {
  const trimmed = text.trim();
  let key: KeyObject;
  try {
    key = trimmed.startsWith('-----BEGIN')
      ? createPrivateKey({ key: trimmed, format: 'pem' })
      : createPrivateKey({ key: Buffer.from(trimmed, 'base64'), format: 'der', type: 'pkcs8' });
  } catch {
    throw new Error('the audit signing key is not a PKCS#8 private key (PEM or base64 DER)');
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error('the audit signing key must be an Ed25519 key');
  return key;
}

/** A signer for an Ed25519 private key. */
export function createAuditSigner(privateKey: KeyObject): AuditSigner {
  const verifier = createAuditVerifier(createPublicKey(privateKey));
  const keyId = verifier.publicKey.keyId;
  return {
    ...verifier,
    sign(fields) {
      return { keyId, signature: sign(null, checkpointMessage({ ...fields, keyId }), privateKey) };
    },
  };
}
