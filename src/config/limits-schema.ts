import { z } from 'zod';

/** `limits`: request rates, and how many objects a tenant may create. */
export const limitsSchema = z
  .strictObject({
    /** Requests per minute, per API key, per user and per tenant; the tightest wins. */
    requestsPerMinute: z
      .strictObject({
        key: z.int().min(1).max(10_000_000).default(600),
        user: z.int().min(1).max(10_000_000).default(1_200),
        tenant: z.int().min(1).max(10_000_000).default(6_000),
      })
      .prefault({}),
    /**
     * The most objects of each kind one tenant's admins may create (API keys: active keys of one
     * user); one more is 409 `resource_limit_exceeded`. Webhooks: `webhooks.maxPerTenant`.
     */
    perTenant: z
      .strictObject({
        agents: z.int().min(1).max(1_000_000).default(1_000),
        tools: z.int().min(1).max(1_000_000).default(500),
        mcpServers: z.int().min(1).max(1_000_000).default(100),
        modelRoutes: z.int().min(1).max(1_000_000).default(200),
        policies: z.int().min(1).max(1_000_000).default(500),
        apiKeysPerUser: z.int().min(1).max(1_000_000).default(100),
      })
      .prefault({}),
  })
  .prefault({});
