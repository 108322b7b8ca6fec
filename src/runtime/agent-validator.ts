import type { AgentValidator } from '../domain/agents/agent-service.ts';
import { AppError } from '../domain/errors.ts';
import { parseMcpToolName } from '../domain/tools/mcp-types.ts';
import type { ModelGateway } from '../gateway/model-gateway.ts';
import type { CorePluginV1 } from '../plugin-api/index.ts';
import type { ToolDefinition } from './tools/tool-registry.ts';

/** Refuses agents naming a model, tool or core that does not exist — at creation, not at run time. */
export function createAgentValidator(options: {
  readonly gateway: ModelGateway;
  readonly tools: readonly ToolDefinition[];
  /** Names of the tenant's own tools (HTTP tools its admins defined). */
  readonly tenantToolNames?: (tenantId: string) => Promise<readonly string[]>;
  /** Names of the tenant's MCP servers: `mcp:<server>:<tool>` names one of their tools. */
  readonly mcpServerNames?: (tenantId: string) => Promise<readonly string[]>;
  readonly cores: ReadonlyMap<string, CorePluginV1>;
}): AgentValidator {
  return {
    async validate(input, tenantId) {
      if (input.model !== undefined && !(await options.gateway.knowsFor(input.model, tenantId))) {
        throw new AppError(
          'unknown_model',
          `No model route or provider named '${input.model}'. Available: ${options.gateway.describe().join(', ')}.`,
        );
      }
      if (
        input.degradation != null &&
        !(await options.gateway.knowsFor(input.degradation.model, tenantId))
      ) {
        throw new AppError(
          'unknown_model',
          `No model route or provider named '${input.degradation.model}' (degradation.model).`,
        );
      }
      const named = [
        ...(input.tools ?? []),
        ...(input.approvalRequiredTools ?? []),
        ...(input.consentRequiredTools ?? []),
      ];
      const tenantTools =
        named.length === 0 || options.tenantToolNames === undefined
          ? []
          : await options.tenantToolNames(tenantId);
      const available = [...options.tools.map((tool) => tool.name), ...tenantTools];
      const mcpServers =
        options.mcpServerNames === undefined ||
        !named.some((name) => parseMcpToolName(name) !== undefined)
          ? []
          : await options.mcpServerNames(tenantId);
      // An MCP tool is checked by its server; the server's tool list is read at run time.
      const unknown = named.filter(
        (name) =>
          !available.includes(name) && !mcpServers.includes(parseMcpToolName(name)?.server ?? ''),
      );
      if (unknown.length > 0) {
        throw new AppError('unknown_tool', `Unknown tools: ${unknown.join(', ')}.`, {
          details: { available },
        });
      }
      if (input.coreId !== undefined && !options.cores.has(input.coreId)) {
        throw new AppError('validation_failed', `No agent core named '${input.coreId}'.`, {
          details: {
            errors: [
              {
                path: 'body.coreId',
                message: `available: ${[...options.cores.keys()].join(', ')}`,
              },
            ],
          },
        });
      }
    },
  };
}
