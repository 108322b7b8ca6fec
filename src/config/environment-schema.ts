import { z } from 'zod';
import { parseSigningKey } from '../domain/audit/audit-signing.ts';
import { parseMasterKey } from '../domain/tools/vault-crypto.ts';
import { logLevels } from './config-schema.ts';

/*
 * The environment half of the configuration: secrets and deployment values, validated at
 * start-up with the file (load-config.ts).
 */

/** True when `parse` accepts the value (a secret: the message never repeats it). */
const parses = (parse: (value: string) => unknown) => (value: string) => {
  try {
    parse(value);
    return true;
  } catch {
    return false;
  }
};
const masterKeySchema = z
  .string()
  .refine(parses(parseMasterKey), 'must be base64 of 32 random bytes (openssl rand -base64 32)');

/** Settings read from the environment (secrets and deployment-specific values only). */
export const environmentSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  DATABASE_RUNTIME_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must be a redis:// URL')
    .optional(),
  BRIGADE_OPERATOR_KEY: z.string().min(24, 'must be at least 24 characters').optional(),
  BRIGADE_HOST: z.string().min(1).optional(),
  BRIGADE_PORT: z
    .string()
    .regex(/^\d{1,5}$/, 'must be a port number')
    .transform(Number)
    .pipe(z.int().min(0).max(65_535))
    .optional(),
  LOG_LEVEL: z.enum(logLevels).optional(),
  /** Ed25519 private key signing audit checkpoints: PKCS#8 PEM or base64 of PKCS#8 DER. */
  BRIGADE_AUDIT_SIGNING_KEY: z
    .string()
    .refine(parses(parseSigningKey), 'must be an Ed25519 private key, PKCS#8 PEM or base64 DER')
    .optional(),
  /** Bearer token that may read `/metrics` (besides the operator key). */
  BRIGADE_METRICS_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  /** Headers for the OTLP exporter, `name=value` pairs separated by commas (collector keys). */
  BRIGADE_OTLP_HEADERS: z
    .string()
    .regex(/^[^=,]+=[^,]*(,[^=,]+=[^,]*)*$/, 'must be name=value pairs separated by commas')
    .optional(),
  /** The credentials vault's master key: base64 of 32 random bytes (secret). */
  BRIGADE_MASTER_KEY: masterKeySchema.optional(),
  /** The master key being rotated away from (set with the new BRIGADE_MASTER_KEY). */
  BRIGADE_MASTER_KEY_PREVIOUS: masterKeySchema.optional(),
});
