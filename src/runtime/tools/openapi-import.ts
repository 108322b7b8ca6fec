import type { ValidationIssue } from '../../domain/errors.ts';
import type { HttpToolDefinition } from '../../domain/tools/tool-types.ts';
import {
  isRecord,
  type OpenApiImportOptions,
  OperationProblem,
  type OperationProblemCode,
  own,
  toToolDefinition,
  UnsupportedOperation,
} from './openapi-operation.ts';
import { createRefResolver, RefError, type RefProblemCode } from './openapi-refs.ts';

/** Limits of one import: the document's size in characters of JSON, and operations selected. */
export const openApiImportLimits = { maxDocumentChars: 1_048_576, maxOperations: 200 } as const;

/** Why a document or one of its operations cannot be imported (stable strings). */
export type ImportProblemCode =
  | RefProblemCode
  | OperationProblemCode
  | 'invalid_document'
  | 'unsupported_version'
  | 'missing_paths'
  | 'base_url_required'
  | 'invalid_base_url'
  | 'too_many_operations'
  | 'operation_not_found'
  | 'missing_operation_id'
  | 'duplicate_name'
  | 'name_conflict'
  | 'unsupported'
  | 'invalid_definition'
  | 'no_operations';

/**
 * One reason an import fails. `path` is where in the request (`body.document.paths./pets.get`),
 * `operationId` null for a problem of the whole document.
 */
export interface ImportProblem extends ValidationIssue {
  readonly operationId: string | null;
  readonly code: ImportProblemCode;
}

/** An operation left out because HTTP tools cannot express it (imports of all operations). */
export interface SkippedOperation {
  readonly operationId: string | null;
  readonly method: string;
  readonly path: string;
  readonly reason: string;
}

/** A tool an import would create. */
export interface PlannedTool {
  readonly operationId: string;
  /** Where the operation is in the request, for problems found later. */
  readonly at: string;
  readonly definition: HttpToolDefinition;
}

/** What an import would do: tools to create, operations skipped, and problems (any fails all). */
export interface ImportPlan {
  readonly tools: PlannedTool[];
  readonly skipped: SkippedOperation[];
  readonly problems: ImportProblem[];
}

const methods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

type Base = { readonly url: string } | { readonly problem: string };

function checkedBase(url: string, what: string): Base {
  if (!/^https?:\/\/[^/?#]/i.test(url))
    return { problem: `${what} is relative or not http(s); pass an absolute baseUrl` };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { problem: `${what} is not a valid URL` };
  }
  if (/[?#]/.test(url)) return { problem: `${what} may not have a query or fragment` };
  if (parsed.username !== '' || parsed.password !== '')
    return { problem: `${what} may not carry credentials` };
  return { url: url.replace(/\/+$/, '') };
}

/** The first server's URL, its `{variables}` replaced by their defaults. */
function serverBase(servers: unknown): Base {
  const server = Array.isArray(servers) ? servers[0] : undefined;
  const raw = own(server, 'url');
  if (typeof raw !== 'string') return { problem: 'the document has no server URL; pass baseUrl' };
  let missing: string | undefined;
  const url = raw.replace(/\{([^{}]*)\}/g, (_, name: string) => {
    const value = own(own(own(server, 'variables'), name), 'default');
    if (typeof value === 'string') return value;
    missing = name;
    return '';
  });
  if (missing !== undefined)
    return { problem: `server variable {${missing}} has no default; pass baseUrl` };
  return checkedBase(url, 'the server URL');
}

interface FoundOperation {
  readonly path: string;
  readonly method: string;
  readonly pathItem: Record<string, unknown>;
  readonly operation: Record<string, unknown>;
  readonly operationId: string | undefined;
  readonly at: string;
}

function operationsOf(
  paths: Record<string, unknown>,
  document: Record<string, unknown>,
  problems: ImportProblem[],
): FoundOperation[] {
  const resolver = createRefResolver(document);
  const found: FoundOperation[] = [];
  for (const [path, raw] of Object.entries(paths)) {
    let pathItem: Record<string, unknown> | undefined;
    try {
      pathItem = resolver.shallow(raw);
    } catch (error) {
      if (!(error instanceof RefError)) throw error;
      problems.push({
        path: `body.document.paths.${path}`,
        message: error.message,
        operationId: null,
        code: error.code,
      });
      continue;
    }
    for (const method of methods) {
      const operation = own(pathItem, method);
      if (pathItem === undefined || !isRecord(operation)) continue;
      const operationId = own(operation, 'operationId');
      found.push({
        path,
        method,
        pathItem,
        operation,
        operationId:
          typeof operationId === 'string' && operationId !== '' ? operationId : undefined,
        at: `body.document.paths.${path}.${method}`,
      });
    }
  }
  return found;
}

function documentProblems(document: unknown, options: OpenApiImportOptions): ImportProblem[] {
  const problems: ImportProblem[] = [];
  const add = (code: ImportProblemCode, path: string, message: string) =>
    problems.push({ path: `body.${path}`, message, operationId: null, code });
  if (!isRecord(document)) {
    add('invalid_document', 'document', 'the document is not a JSON object');
    return problems;
  }
  const version = own(document, 'openapi');
  if (typeof version !== 'string' || !/^3\.[01]\.\d+/.test(version))
    add('unsupported_version', 'document.openapi', 'only OpenAPI 3.0 and 3.1 documents');
  const paths = own(document, 'paths');
  if (!isRecord(paths) || Object.keys(paths).length === 0)
    add('missing_paths', 'document.paths', 'the document has no paths');
  const base =
    options.baseUrl === undefined
      ? serverBase(own(document, 'servers'))
      : checkedBase(options.baseUrl, 'baseUrl');
  if ('problem' in base)
    add(
      options.baseUrl === undefined ? 'base_url_required' : 'invalid_base_url',
      options.baseUrl === undefined ? 'document.servers' : 'baseUrl',
      base.problem,
    );
  return problems;
}

function selectionProblems(
  found: readonly FoundOperation[],
  options: OpenApiImportOptions,
  selected: number,
): ImportProblem[] {
  const known = new Set(found.map((operation) => operation.operationId));
  const problem = (path: string, message: string, code: ImportProblemCode): ImportProblem => ({
    path: `body.${path}`,
    message,
    operationId: null,
    code,
  });
  return [
    ...(options.operations ?? [])
      .filter((id) => !known.has(id))
      .map((id) =>
        problem('operations', `no operation '${id}' in the document`, 'operation_not_found'),
      ),
    ...Object.keys(options.riskByOperation ?? {})
      .filter((id) => !known.has(id))
      .map((id) =>
        problem(
          `riskByOperation.${id}`,
          `no operation '${id}' in the document`,
          'operation_not_found',
        ),
      ),
    ...(selected > openApiImportLimits.maxOperations
      ? [
          problem(
            'operations',
            `${selected} operations selected; at most ${openApiImportLimits.maxOperations} per import`,
            'too_many_operations',
          ),
        ]
      : []),
  ];
}

function duplicateProblems(tools: readonly PlannedTool[]): ImportProblem[] {
  return tools.flatMap((tool) => {
    const others = tools.filter(
      (other) => other !== tool && other.definition.name === tool.definition.name,
    );
    if (others.length === 0) return [];
    return [
      {
        path: tool.at,
        message: `tool name '${tool.definition.name}' is also the name for ${others.map((other) => `'${other.operationId}'`).join(', ')}`,
        operationId: tool.operationId,
        code: 'duplicate_name' as const,
      },
    ];
  });
}

/**
 * Plans the import of an OpenAPI 3.0/3.1 document as tenant HTTP tools, without I/O: which
 * tools it would create, which operations it skips (unsupported, when every operation is
 * imported) and every problem (an operation named in `operations` that is unsupported is a
 * problem, not a skip). Names are checked against each other here; against the tenant's
 * tools and the tool rules by the tool service.
 */
export function planOpenApiImport(document: unknown, options: OpenApiImportOptions): ImportPlan {
  const problems = documentProblems(document, options);
  if (problems.length > 0 || !isRecord(document)) return { tools: [], skipped: [], problems };
  const found = operationsOf(own(document, 'paths') as Record<string, unknown>, document, problems);
  const wanted = options.operations === undefined ? undefined : new Set(options.operations);
  const selected =
    wanted === undefined
      ? found
      : found.filter((item) => item.operationId !== undefined && wanted.has(item.operationId));
  const selection = selectionProblems(found, options, selected.length);
  if (selection.length > 0)
    return { tools: [], skipped: [], problems: [...problems, ...selection] };
  const defaultBase = (
    options.baseUrl === undefined
      ? serverBase(own(document, 'servers'))
      : checkedBase(options.baseUrl, 'baseUrl')
  ) as { url: string };
  const tools: PlannedTool[] = [];
  const skipped: SkippedOperation[] = [];
  for (const item of selected) {
    const operationId = item.operationId ?? null;
    const fail = (code: ImportProblemCode, message: string) =>
      problems.push({ path: item.at, message, operationId, code });
    const servers = own(item.operation, 'servers') ?? own(item.pathItem, 'servers');
    const base =
      options.baseUrl === undefined && servers !== undefined ? serverBase(servers) : defaultBase;
    if ('problem' in base) {
      fail('base_url_required', base.problem);
      continue;
    }
    try {
      const definition = toToolDefinition({
        document,
        resolver: createRefResolver(document),
        baseUrl: base.url,
        options,
        path: item.path,
        method: item.method,
        pathItem: item.pathItem,
        operation: item.operation,
        operationId: item.operationId ?? 'unnamed',
      });
      if (item.operationId === undefined)
        fail('missing_operation_id', 'the operation has no operationId (tool names come from it)');
      else tools.push({ operationId: item.operationId, at: item.at, definition });
    } catch (error) {
      if (error instanceof UnsupportedOperation) {
        if (wanted === undefined)
          skipped.push({
            operationId,
            method: item.method.toUpperCase(),
            path: item.path,
            reason: error.message,
          });
        else fail('unsupported', `not supported: ${error.message}`);
      } else if (error instanceof OperationProblem || error instanceof RefError)
        fail(error.code, error.message);
      else throw error;
    }
  }
  problems.push(...duplicateProblems(tools));
  if (problems.length === 0 && tools.length === 0)
    problems.push({
      path: 'body.document.paths',
      message: 'no operation of the document can be imported (see skipped)',
      operationId: null,
      code: 'no_operations',
    });
  return { tools, skipped, problems };
}
