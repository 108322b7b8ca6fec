import type { OpenAPIHono } from '@hono/zod-openapi';
import type { AgentService } from '../domain/agents/agent-service.ts';
import type { ThreadService } from '../domain/agents/thread-service.ts';
import type { ConsentService } from '../domain/consent/consent-service.ts';
import type { PolicyService } from '../domain/guards/policy-service.ts';
import type { UsageService } from '../domain/guards/usage-service.ts';
import type { DataRightsService } from '../domain/identity/data-rights-service.ts';
import type { IdentityService } from '../domain/identity/identity-service.ts';
import type { Principal } from '../domain/identity/principal.ts';
import type { MemoryService } from '../domain/memory/memory-service.ts';
import type { CachingGateway } from '../runtime/cached-gateway.ts';
import type { CredentialService } from '../runtime/credential-service.ts';
import type { McpServerService } from '../runtime/mcp-server-service.ts';
import type { ModelRouteService } from '../runtime/model-route-service.ts';
import type { RunSignals } from '../runtime/run-signals.ts';
import type { ToolService } from '../runtime/tool-service.ts';
import type { AuditCheckpointStore } from '../storage/identity/audit-checkpoint-store.ts';
import type { AuditStore } from '../storage/identity/audit-store.ts';
import type { ApprovalStore } from '../storage/runs/approval-store.ts';
import type { SpanStore } from '../storage/tracing/span-store.ts';
import type { WebhookStore } from '../storage/webhooks/webhook-store.ts';

/** Per-request values middleware puts on the Hono context. */
export interface AppVariables {
  requestId: string;
  principal: Principal;
  /**
   * Authenticates the request's credential again: a long-lived response (an event stream)
   * calls `check` every `everyMs`, so a revoked key or a suspended tenant ends it.
   */
  reauthentication: {
    readonly everyMs: number;
    readonly check: () => Promise<Principal>;
  };
}

/** The Hono environment of Brigade's app. */
export interface AppEnv {
  Variables: AppVariables;
}

/** The typed app every route module registers on. */
export type BrigadeApp = OpenAPIHono<AppEnv>;

/** Services route modules call; built by the composition root. */
export interface RouteServices {
  readonly identity: IdentityService;
  readonly agents: AgentService;
  readonly threads: ThreadService;
  readonly eventHub: Pick<RunSignals, 'subscribe'>;
  readonly approvals: ApprovalStore;
  readonly audit: AuditStore;
  readonly auditCheckpoints: AuditCheckpointStore;
  readonly consents: ConsentService;
  readonly dataRights: DataRightsService;
  /** What agents remember about the caller (list and erase). */
  readonly memories: MemoryService;
  /** Tenant tools and kill switches. */
  readonly tools: ToolService;
  /** The credentials vault (metadata only over the API). */
  readonly credentials: CredentialService;
  /** The tenant's MCP servers. */
  readonly mcpServers?: McpServerService;
  readonly modelRoutes: ModelRouteService;
  readonly webhooks: WebhookStore;
  readonly spans: SpanStore;
  readonly policies: PolicyService;
  readonly usage: UsageService;
  /** The OpenAI-compatible API's model calls: metered, and the names the gateway knows. */
  readonly chat: {
    readonly gateway: CachingGateway;
    /** Whether `model` names something the tenant can call (its routes included). */
    knows(model: string, tenantId: string): Promise<boolean>;
  };
}
