import { asTenantUser } from '../domain/agents/agent-service.ts';
import type { ValidationIssue } from '../domain/errors.ts';
import { AppError, ConflictError, NotFoundError, ValidationError } from '../domain/errors.ts';
import { assertCan, type Principal, type UserPrincipal } from '../domain/identity/principal.ts';
import { parseMcpToolName } from '../domain/tools/mcp-types.ts';
import type { HttpToolDefinition, StoredTool, ToolBlock } from '../domain/tools/tool-types.ts';
import type { ToolStore } from '../storage/tools/tool-store.ts';
import { type EgressPolicy, staticEgressProblems } from './tools/egress-guard.ts';
import { schemaProblems } from './tools/json-schema.ts';
import {
  type ImportProblem,
  openApiImportLimits,
  planOpenApiImport,
  type SkippedOperation,
} from './tools/openapi-import.ts';
import type { OpenApiImportOptions } from './tools/openapi-operation.ts';
import { templateArguments, templateProblems } from './tools/tenant-http-tool.ts';
import type { ToolDefinition } from './tools/tool-registry.ts';

/** What an OpenAPI import asks for. */
export interface OpenApiImportInput {
  readonly document: unknown;
  readonly options: OpenApiImportOptions;
  /** Plan and check only; nothing is written. */
  readonly dryRun: boolean;
  /** The HTTP layer's checks of a definition's shape (the schema createTool's body passes). */
  readonly shapeProblems?: (definition: HttpToolDefinition) => readonly ValidationIssue[];
}

/** What an OpenAPI import did (or, on a dry run, would do). */
export interface OpenApiImportResult {
  /** The stored tools; empty on a dry run. */
  readonly created: StoredTool[];
  /** The definitions created (or that would be). */
  readonly planned: HttpToolDefinition[];
  readonly skipped: SkippedOperation[];
}

function documentSize(document: unknown): number {
  try {
    return JSON.stringify(document).length;
  } catch {
    const problem: ImportProblem = {
      path: 'body.document',
      message: 'the document is nested too deeply',
      operationId: null,
      code: 'invalid_document',
    };
    throw new ValidationError([problem]);
  }
}

/** A tool as listings show it: a built-in, or one of the tenant's HTTP tools. */
export type ListedTool =
  | (StoredTool & { readonly kind: 'http' })
  | { readonly kind: 'builtin'; readonly tool: ToolDefinition };

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function toolNotFound(): NotFoundError {
  return new NotFoundError('tool_not_found', 'Tool not found.');
}

/**
 * Tenant tools and kill switches. Every member reads the tool list (agents name tools); owners
 * and admins define HTTP tools and switch tools off. A definition is checked before it is
 * saved, so a bad one fails at creation and not at run time: the name is free (not a
 * built-in), the argument schema compiles (Ajv) and is an object schema, the URL template has
 * a literal host that the egress policy allows, every placeholder and provenance rule names a
 * schema property, and the timeout and response cap are within the platform's limits.
 */
export function createToolService(options: {
  readonly store: ToolStore;
  readonly builtIns: readonly ToolDefinition[];
  readonly egress: EgressPolicy;
  readonly maxTimeoutMs: number;
  readonly maxResponseChars: number;
  /** Whether an agent id names an agent of the caller's tenant. */
  readonly agentExists: (principal: UserPrincipal, agentId: string) => Promise<boolean>;
  /** Names of the tenant's MCP servers: a kill switch may name `mcp:<server>:<tool>` of one. */
  readonly mcpServerNames?: (tenantId: string) => Promise<readonly string[]>;
  /** Called after a kill switch of the tenant was set or lifted (drops cached switches). */
  readonly onBlocksChanged?: (tenantId: string) => void;
}) {
  const { store } = options;

  /** Every problem with a definition (createTool, updateTool and each imported operation). */
  function definitionProblems(definition: HttpToolDefinition): ValidationIssue[] {
    const issues: ValidationIssue[] = [];
    const add = (path: string, message: string) => issues.push({ path: `body.${path}`, message });
    if (options.builtIns.some((tool) => tool.name === definition.name))
      add('name', `'${definition.name}' is a built-in tool`);
    for (const message of schemaProblems(definition.inputSchema)) add('inputSchema', message);
    const template = templateProblems(definition.urlTemplate);
    for (const message of template) add('urlTemplate', message);
    if (template.length === 0) {
      const sample = new URL(definition.urlTemplate.replace(/\{[A-Za-z_][A-Za-z0-9_]*\}/g, 'x'));
      for (const message of staticEgressProblems(sample, options.egress))
        add('urlTemplate', message);
    }
    const properties = Object.keys(
      (definition.inputSchema['properties'] ?? {}) as Record<string, unknown>,
    );
    for (const name of templateArguments(definition.urlTemplate))
      if (!properties.includes(name))
        add('urlTemplate', `placeholder {${name}} is not a property of inputSchema`);
    definition.provenanceRules?.forEach((rule, index) => {
      if (!properties.includes(rule.argument))
        add(
          `provenanceRules.${index}.argument`,
          `'${rule.argument}' is not a property of inputSchema`,
        );
    });
    if (definition.auth?.scheme === 'header' && definition.auth.headerName === undefined)
      add('auth.headerName', "required when scheme is 'header'");
    if (definition.timeoutMs !== undefined && definition.timeoutMs > options.maxTimeoutMs)
      add('timeoutMs', `at most ${options.maxTimeoutMs}`);
    if (
      definition.maxResponseChars !== undefined &&
      definition.maxResponseChars > options.maxResponseChars
    )
      add('maxResponseChars', `at most ${options.maxResponseChars}`);
    return issues;
  }

  function check(definition: HttpToolDefinition): void {
    const issues = definitionProblems(definition);
    if (issues.length > 0) throw new ValidationError(issues);
  }

  async function assertNameFree(user: UserPrincipal, name: string, selfId?: string) {
    const existing = await store.list(user);
    if (existing.some((tool) => tool.definition.name === name && tool.id !== selfId))
      throw new ConflictError(`A tool named '${name}' exists already.`);
  }

  async function load(principal: Principal, toolId: string) {
    const user = asTenantUser(principal);
    assertCan(user, 'agent:read');
    if (!uuidPattern.test(toolId)) throw toolNotFound();
    const tool = await store.get(user, toolId);
    if (tool === undefined) throw toolNotFound();
    return { user, tool };
  }

  return {
    async create(principal: Principal, definition: HttpToolDefinition) {
      const user = asTenantUser(principal);
      assertCan(user, 'tool:manage');
      check(definition);
      await assertNameFree(user, definition.name);
      return store.create(user, definition);
    },
    /**
     * Imports the operations of an OpenAPI document as HTTP tools, all or none: every planned
     * definition passes the same checks as `create` (and its name must be free); any problem
     * fails the whole import with one 422 listing each (`errors`, with `operationId` and
     * `code`), and nothing is written. The tools are created in one transaction.
     */
    async importOpenApi(
      principal: Principal,
      input: OpenApiImportInput,
    ): Promise<OpenApiImportResult> {
      const user = asTenantUser(principal);
      assertCan(user, 'tool:manage');
      if (documentSize(input.document) > openApiImportLimits.maxDocumentChars)
        throw new AppError(
          'payload_too_large',
          `The document is larger than ${openApiImportLimits.maxDocumentChars} characters of JSON.`,
        );
      const plan = planOpenApiImport(input.document, input.options);
      const problems = [...plan.problems];
      if (problems.length === 0) {
        const taken = new Set((await store.list(user)).map((tool) => tool.definition.name));
        for (const { definition, at, operationId } of plan.tools) {
          const issues = [
            ...(input.shapeProblems?.(definition) ?? []),
            ...definitionProblems(definition),
          ];
          const naming = issues.filter((issue) => issue.path === 'body.name');
          const other = issues.filter((issue) => issue.path !== 'body.name');
          if (taken.has(definition.name))
            naming.push({
              path: 'body.name',
              message: `a tool named '${definition.name}' exists already`,
            });
          const describe = (list: readonly ValidationIssue[]) =>
            list
              .map((issue) => `${issue.path.replace(/^body\./, '')}: ${issue.message}`)
              .join('; ');
          if (naming.length > 0)
            problems.push({
              path: at,
              operationId,
              code: 'name_conflict',
              message: describe(naming),
            });
          if (other.length > 0)
            problems.push({
              path: at,
              operationId,
              code: 'invalid_definition',
              message: describe(other),
            });
        }
      }
      if (problems.length > 0)
        throw new AppError(
          'validation_failed',
          `The document cannot be imported (${problems.length} problem${problems.length === 1 ? '' : 's'}); nothing was created.`,
          { details: { errors: problems, skipped: plan.skipped } },
        );
      const planned = plan.tools.map((tool) => tool.definition);
      // A dry run reports what the import would do, the tenant's tool cap included.
      if (input.dryRun) await store.checkRoom(user, plan.tools.length);
      const created = input.dryRun ? [] : await store.createMany(user, plan.tools, 'openapi');
      return { created, planned, skipped: plan.skipped };
    },
    async list(principal: Principal): Promise<ListedTool[]> {
      const user = asTenantUser(principal);
      assertCan(user, 'agent:read');
      const own = await store.list(user);
      return [
        ...options.builtIns.map((tool) => ({ kind: 'builtin' as const, tool })),
        ...own.map((tool) => ({ ...tool, kind: 'http' as const })),
      ];
    },
    async get(principal: Principal, toolId: string) {
      return (await load(principal, toolId)).tool;
    },
    async update(principal: Principal, toolId: string, definition: HttpToolDefinition) {
      const { user } = await load(principal, toolId);
      assertCan(user, 'tool:manage');
      check(definition);
      await assertNameFree(user, definition.name, toolId);
      const updated = await store.update(user, toolId, definition);
      if (updated === undefined) throw toolNotFound();
      return updated;
    },
    async delete(principal: Principal, toolId: string) {
      const { user } = await load(principal, toolId);
      assertCan(user, 'tool:manage');
      if (!(await store.delete(user, toolId))) throw toolNotFound();
    },
    async disable(
      principal: Principal,
      input: { toolName: string; agentId?: string | undefined; reason?: string | undefined },
    ): Promise<ToolBlock> {
      const user = asTenantUser(principal);
      assertCan(user, 'tool:manage');
      // An MCP tool is known by its server (its tool list is read at run time, and a switch
      // may be set before a tool appears).
      const mcp = parseMcpToolName(input.toolName);
      const known =
        mcp === undefined
          ? options.builtIns.some((tool) => tool.name === input.toolName) ||
            (await store.list(user)).some((tool) => tool.definition.name === input.toolName)
          : ((await options.mcpServerNames?.(user.tenantId)) ?? []).includes(mcp.server);
      if (!known) throw new AppError('unknown_tool', `No tool named '${input.toolName}'.`);
      if (
        input.agentId !== undefined &&
        (!uuidPattern.test(input.agentId) || !(await options.agentExists(user, input.agentId)))
      )
        throw new NotFoundError('agent_not_found', 'Agent not found.');
      const existing = await store.listBlocks(user);
      if (
        existing.some(
          (block) => block.toolName === input.toolName && block.agentId === (input.agentId ?? null),
        )
      )
        throw new ConflictError('This tool is already disabled there.');
      const block = await store.createBlock(user, {
        toolName: input.toolName,
        agentId: input.agentId ?? null,
        reason: input.reason ?? null,
      });
      options.onBlocksChanged?.(user.tenantId);
      return block;
    },
    async listBlocks(principal: Principal): Promise<ToolBlock[]> {
      const user = asTenantUser(principal);
      // Owners and admins only, as the docs say: a switch's reason may name an incident.
      assertCan(user, 'tool:manage');
      return store.listBlocks(user);
    },
    async enable(principal: Principal, blockId: string): Promise<void> {
      const user = asTenantUser(principal);
      assertCan(user, 'tool:manage');
      if (!uuidPattern.test(blockId) || !(await store.deleteBlock(user, blockId)))
        throw new NotFoundError('not_found', 'Kill switch not found.');
      options.onBlocksChanged?.(user.tenantId);
    },
  };
}

/** The tool service's type. */
export type ToolService = ReturnType<typeof createToolService>;
