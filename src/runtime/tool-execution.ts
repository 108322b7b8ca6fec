import { AppError } from '../domain/errors.ts';
import type { UserPrincipal } from '../domain/identity/principal.ts';
import { CredentialRefreshError } from '../domain/tools/oauth-types.ts';
import type { ToolOutcomeV1 } from '../plugin-api/index.ts';
import type { RunClaim } from './run-executor.ts';
import type { ToolCallContext } from './run-steps.ts';
import { secretForms } from './tools/output-guard.ts';
import { sliceChars } from './tools/read-capped.ts';
import type { ToolCredentialsCapability, ToolDefinition } from './tools/tool-registry.ts';

/** What {@link executeTool} needs besides the call: limits, the vault and redaction. */
export interface ToolExecutionOptions {
  readonly toolOutputLimit: number;
  readonly toolTimeoutMs: number;
  /** Decrypts a credential of the run's user for one call (the vault; audited there). */
  readonly resolveCredential?:
    | ((request: {
        readonly claim: RunClaim;
        readonly actor: UserPrincipal | undefined;
        readonly name: string;
        readonly toolName: string;
        readonly destination: URL | undefined;
      }) => Promise<{ readonly secret: string; readonly kind?: string } | undefined>)
    | undefined;
  /** Redacts secrets from tool output before it is kept or shown to the model. */
  readonly redact?: ((text: string, secrets: ReadonlySet<string>) => string) | undefined;
}

/** The stable code (and retry hint) a tool's failure carries to its step and the model. */
function codeOf(error: unknown): { code?: string; retryable?: boolean } {
  // A credential that could not be made usable (OAuth refresh): its stable code, and
  // whether the call may succeed later.
  if (error instanceof CredentialRefreshError)
    return { code: error.code, retryable: error.retryable };
  // A refusal of the harness's own (`consent_required` from long-term memory, say).
  if (error instanceof AppError) return { code: error.code };
  return {};
}

/**
 * Runs one tool call that passed the gate: with its timeout (the tighter of the tool's and
 * the run's), its output cap, a credential capability bound to the run's user, and every
 * secret it used redacted from what it returns or throws.
 */
export async function executeTool(
  options: ToolExecutionOptions,
  context: ToolCallContext,
  call: { readonly tool: ToolDefinition; readonly input: unknown; readonly key: string },
): Promise<ToolOutcomeV1> {
  const { tool, input, key } = call;
  const timeoutMs = Math.min(tool.timeoutMs ?? options.toolTimeoutMs, options.toolTimeoutMs);
  const outputLimit = Math.min(
    tool.maxOutputChars ?? options.toolOutputLimit,
    options.toolOutputLimit,
  );
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([context.signal, timeout]);
  const used = new Set<string>();
  const resolveCredential = options.resolveCredential;
  const credentials: ToolCredentialsCapability | undefined =
    resolveCredential === undefined
      ? undefined
      : {
          resolve: async (name, destination) => {
            const found = await resolveCredential({
              claim: context.claim,
              actor: context.actor,
              name,
              toolName: tool.name,
              destination,
            });
            if (found !== undefined) {
              for (const form of secretForms(found.secret, found.kind)) {
                used.add(form);
                context.secrets?.add(form);
              }
            }
            return found;
          },
        };
  const clean = (text: string) => options.redact?.(text, used) ?? text;
  try {
    const output = await Promise.race([
      tool.execute(input as Record<string, unknown>, {
        idempotencyKey: `${context.claim.runId}:${key}`,
        signal,
        credentials,
        memory: context.memory,
      }),
      new Promise<never>((_, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
      ),
    ]);
    const json = clean(JSON.stringify(output) ?? 'null');
    return json.length > outputLimit
      ? { status: 'ok', output: { truncated: true, preview: sliceChars(json, outputLimit) } }
      : { status: 'ok', output: JSON.parse(json) as unknown };
  } catch (error) {
    context.signal.throwIfAborted();
    if (timeout.aborted)
      return { status: 'error', message: `Tool timed out after ${timeoutMs} ms.` };
    return { status: 'error', message: clean((error as Error).message), ...codeOf(error) };
  }
}
