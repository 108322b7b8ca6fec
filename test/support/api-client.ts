/** A response as tests see it: status, parsed body and headers. */
export interface ApiResponse<T = Record<string, unknown>> {
  readonly status: number;
  readonly body: T;
  readonly headers: Headers;
}

/** A minimal HTTP client for the public API, authenticated by one bearer credential. */
export interface ApiClient {
  request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<ApiResponse<T>>;
  get<T = Record<string, unknown>>(path: string): Promise<ApiResponse<T>>;
  post<T = Record<string, unknown>>(path: string, body?: unknown): Promise<ApiResponse<T>>;
}

/** Creates an {@link ApiClient} for `baseUrl` presenting `credential` (or none). */
export function apiClient(baseUrl: string, credential?: string): ApiClient {
  async function request<T>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = {};
    if (credential !== undefined) headers['authorization'] = `Bearer ${credential}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text.length === 0 ? null : JSON.parse(text);
    } catch {
      // Leave non-JSON bodies as text.
    }
    return { status: response.status, body: parsed as T, headers: response.headers };
  }
  return {
    request,
    get: (path) => request('GET', path),
    post: (path, body) => request('POST', path, body),
  };
}

/** Shape of a created tenant/user/key as tests read it. */
export interface Created {
  readonly id: string;
  readonly secret?: string;
  readonly [key: string]: unknown;
}

/** Creates a tenant with one user of `role` and an API key; returns the ids and the secret. */
export async function seedUser(
  operator: ApiClient,
  options: { readonly tenantId: string; readonly role: string; readonly email?: string },
): Promise<{ userId: string; keyId: string; secret: string }> {
  const user = await operator.post<Created>(`/v1/tenants/${options.tenantId}/users`, {
    role: options.role,
    ...(options.email === undefined ? {} : { email: options.email }),
  });
  if (user.status !== 201)
    throw new Error(`seed user failed: ${user.status} ${JSON.stringify(user.body)}`);
  const key = await operator.post<Created>(
    `/v1/tenants/${options.tenantId}/users/${user.body.id}/api-keys`,
    {
      name: 'test',
    },
  );
  if (key.status !== 201 || key.body.secret === undefined)
    throw new Error(`seed key failed: ${key.status}`);
  return { userId: user.body.id, keyId: key.body.id, secret: key.body.secret };
}

/** Creates a tenant as the operator and returns its id. */
export async function seedTenant(operator: ApiClient, slug: string): Promise<string> {
  const tenant = await operator.post<Created>('/v1/tenants', { slug, name: slug });
  if (tenant.status !== 201)
    throw new Error(`seed tenant failed: ${tenant.status} ${JSON.stringify(tenant.body)}`);
  return tenant.body.id;
}

/** Terminal run states. */
export const terminalStatuses = ['completed', 'failed', 'cancelled', 'expired'] as const;

/** Polls a run until its status is one of `statuses` (about 7 s at most). */
export async function waitForRun<
  T extends { status: string } = Created & { status: string; errorCode: string | null },
>(
  client: ApiClient,
  ids: { readonly threadId: string; readonly runId: string },
  statuses: readonly string[] = terminalStatuses,
): Promise<T> {
  for (let attempt = 0; attempt < 300; attempt += 1) {
    const run = await client.get<T>(`/v1/threads/${ids.threadId}/runs/${ids.runId}`);
    if (statuses.includes(run.body.status)) return run.body;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`run ${ids.runId} never reached ${statuses.join('|')}`);
}

/**
 * `GET /v1/usage?<query>` as `client`, asked again until `ready` holds (usage records are
 * written in batches, so a call just answered may not be counted yet), for 10 s at most; then
 * the last report, for the test's assertions to show.
 */
export async function usageWhen<T extends { totals: { requests: number } }>(
  client: ApiClient,
  query: string,
  ready: (report: T) => boolean,
): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const report = await client.get<T>(`/v1/usage${query === '' ? '' : `?${query}`}`);
    if (report.status !== 200)
      throw new Error(`usage: ${report.status} ${JSON.stringify(report.body)}`);
    if (ready(report.body) || Date.now() > deadline) return report.body;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
