import {
  type ContractChecker,
  createContractChecker,
  type OpenApiDocument,
} from './contract-checker.ts';

/** A response as the contract tests read it. */
export interface ContractResponse<T = Record<string, unknown>> {
  readonly status: number;
  /** Parsed JSON, or the raw text of any other body (an event stream, CSV). */
  readonly body: T;
  readonly text: string;
  readonly headers: Headers;
  /** The operation of the document the request matched. */
  readonly operationId: string | undefined;
}

/** Options of one request. */
export interface RequestOptions {
  /** A JSON body (serialised), or with `raw` the exact text sent. */
  readonly body?: unknown;
  readonly raw?: string;
  readonly headers?: Record<string, string>;
  /** Replaces the client's credential; `null` sends none. */
  readonly credential?: string | null;
}

/** A mismatch between a response and the document. */
export interface ContractViolation {
  readonly operationId: string | undefined;
  readonly request: string;
  readonly status: number;
  readonly problems: readonly string[];
}

/** An HTTP client whose every response is checked against the OpenAPI document. */
export interface ContractClient {
  request<T = Record<string, unknown>>(
    method: string,
    path: string,
    options?: RequestOptions,
  ): Promise<ContractResponse<T>>;
  get<T = Record<string, unknown>>(path: string): Promise<ContractResponse<T>>;
  post<T = Record<string, unknown>>(path: string, body?: unknown): Promise<ContractResponse<T>>;
  patch<T = Record<string, unknown>>(path: string, body: unknown): Promise<ContractResponse<T>>;
  delete<T = Record<string, unknown>>(path: string): Promise<ContractResponse<T>>;
}

/** What every checked response adds up to: violations and the statuses seen per operation. */
export interface ContractRecorder {
  readonly checker: ContractChecker;
  readonly violations: ContractViolation[];
  /** operationId → the statuses it answered. */
  readonly seen: Map<string, Set<number>>;
  client(credential?: string): ContractClient;
}

/** Loads `/openapi.json` of the server at `baseUrl` and returns a recorder for it. */
export async function createContractRecorder(baseUrl: string): Promise<ContractRecorder> {
  const document = (await (await fetch(`${baseUrl}/openapi.json`)).json()) as OpenApiDocument;
  const checker = createContractChecker(document);
  const violations: ContractViolation[] = [];
  const seen = new Map<string, Set<number>>();

  const client = (credential?: string): ContractClient => {
    async function request<T>(
      method: string,
      path: string,
      options: RequestOptions = {},
    ): Promise<ContractResponse<T>> {
      const headers: Record<string, string> = {};
      const presented = options.credential === undefined ? credential : options.credential;
      if (presented !== undefined && presented !== null)
        headers['authorization'] = `Bearer ${presented}`;
      const text =
        options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
      if (text !== undefined) headers['content-type'] = 'application/json';
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: { ...headers, ...options.headers },
        ...(text === undefined ? {} : { body: text }),
        signal: AbortSignal.timeout(20_000),
      });
      const received = await response.text();
      const bare = path.split('?')[0] ?? path;
      const verdict = checker.check({
        method,
        path: bare,
        status: response.status,
        contentType: response.headers.get('content-type'),
        text: received,
      });
      const operationId = verdict.operation?.operationId;
      if (operationId !== undefined) {
        const statuses = seen.get(operationId) ?? new Set<number>();
        statuses.add(response.status);
        seen.set(operationId, statuses);
      }
      if (verdict.problems.length > 0)
        violations.push({
          operationId,
          request: `${method} ${path}`,
          status: response.status,
          problems: [...new Set(verdict.problems)],
        });
      let body: unknown = received;
      try {
        body = received === '' ? null : JSON.parse(received);
      } catch {
        // Not JSON: the text itself (an event stream, CSV).
      }
      return {
        status: response.status,
        body: body as T,
        text: received,
        headers: response.headers,
        operationId,
      };
    }
    return {
      request,
      get: (path) => request('GET', path),
      post: (path, body) => request('POST', path, body === undefined ? {} : { body }),
      patch: (path, body) => request('PATCH', path, { body }),
      delete: (path) => request('DELETE', path),
    };
  };
  return { checker, violations, seen, client };
}
