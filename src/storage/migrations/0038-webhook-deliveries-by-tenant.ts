/**
 * The delivery worker takes due webhook deliveries in turns by tenant (each claim takes every
 * tenant's oldest due delivery before any tenant's second), so one tenant's backlog — many
 * endpoints, slow receivers, retries — cannot hold another's webhooks behind it. This index
 * finds a tenant's oldest due deliveries without scanning everyone's.
 */
export function webhookDeliveriesByTenantMigration(): string {
  return `
create index webhook_deliveries_tenant_due on brigade.webhook_deliveries (tenant_id, next_attempt_at)
  where status = 'pending';
`;
}
