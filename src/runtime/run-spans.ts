import { SpanStatusCode, type Tracing } from '../observability/tracing.ts';
import type { ToolOutcomeV1 } from '../plugin-api/index.ts';
import { RunParkedError } from './approval-gate.ts';
import type { RunClaim } from './run-executor-types.ts';
import type { LoadedRun } from './run-loader.ts';

/**
 * Runs one execution of a run in its `invoke_agent` span: a child of the request that created
 * the run (its stored `traceparent`), whichever process executes it and however late — a run
 * resumed after a crash or an approval joins the same trace.
 */
export function inRunSpan(
  tracing: Tracing,
  run: { readonly claim: RunClaim; readonly loaded: LoadedRun },
  work: () => Promise<void>,
): Promise<void> {
  const { agent, traceParent } = run.loaded;
  return tracing.inSpan(
    agent === undefined ? 'invoke_agent' : `invoke_agent ${agent.name}`,
    {
      parent: traceParent,
      attributes: {
        ...tracing.subjectAttributes(run.claim),
        'gen_ai.operation.name': 'invoke_agent',
        ...(agent === undefined
          ? {}
          : { 'gen_ai.agent.id': agent.id, 'gen_ai.agent.name': agent.name }),
      },
    },
    work,
  );
}

/**
 * Runs one tool call in its `execute_tool` span, which records how it ended in
 * `brigade.tool.outcome`: `ok` or `error` when it ran or was refused, `approval_required` when
 * it waits for the user's decision (the run parks; not an error). The span is the call's step
 * (`brigade.step.key`, the checkpoint key `tool:<callId>`).
 */
export async function inToolSpan(
  tracing: Tracing,
  call: { readonly claim: RunClaim; readonly toolName: string; readonly toolCallId: string },
  work: () => Promise<ToolOutcomeV1>,
): Promise<ToolOutcomeV1> {
  const ended = await tracing.inSpan(
    `execute_tool ${call.toolName}`,
    {
      attributes: {
        ...tracing.subjectAttributes(call.claim),
        'gen_ai.operation.name': 'execute_tool',
        'gen_ai.tool.name': call.toolName,
        'gen_ai.tool.call.id': call.toolCallId,
        'gen_ai.tool.type': 'function',
        'brigade.step.key': `tool:${call.toolCallId}`,
      },
    },
    async (span) => {
      try {
        const outcome = await work();
        span.setAttribute('brigade.tool.outcome', outcome.status);
        if (outcome.status === 'error') span.setStatus({ code: SpanStatusCode.ERROR });
        return { outcome };
      } catch (error) {
        if (!(error instanceof RunParkedError)) throw error;
        span.setAttributes({
          'brigade.tool.outcome': 'approval_required',
          'brigade.approval.id': error.approvalId,
        });
        return { parked: error };
      }
    },
  );
  if ('parked' in ended) throw ended.parked;
  return ended.outcome;
}
