/**
 * Webhook signing secrets sealed with the vault: `sealed_secret` holds the secret encrypted with
 * the tenant's data key (AES-256-GCM, bound to the tenant and endpoint) when the process has a
 * vault key; `secret` (plain) only when it has none, as before. Exactly one of the two is set.
 */
export function sealedWebhookSecretsMigration(): string {
  return `
alter table brigade.webhook_endpoints alter column secret drop not null;
alter table brigade.webhook_endpoints add column sealed_secret bytea;
alter table brigade.webhook_endpoints add constraint webhook_endpoints_one_secret
  check ((secret is null) <> (sealed_secret is null));
`;
}
