import type { ModelResultV1 } from '../plugin-api/index.ts';

/**
 * Makes the tool-call ids of one model step unique within its run, and records them in `used`
 * (the ids of the run's earlier model steps, updated in place).
 *
 * The ids come from the provider, and the run keys on them: the checkpoint `tool:<callId>`,
 * the idempotency key `runId:tool:<callId>` and the call's approval. Providers do not always
 * make them unique: some repeat one id (or send `""`) for several calls of a step, some number
 * them per response (`call_0` in every step). A call whose id is empty, was used by an earlier
 * step of the run or by an earlier call of this step gets `call_<step>_<position>` instead
 * (with `_<n>` added while that too is taken); every other id is kept as the provider sent it.
 *
 * Deterministic: it depends only on the run's earlier steps and this one, so the checkpointed
 * step (which holds the rewritten ids) agrees with what a resumed run replays. Returns `result`
 * itself when nothing changed.
 */
export function uniqueToolCallIds(
  result: ModelResultV1,
  step: { readonly index: number; readonly used: Set<string> },
): ModelResultV1 {
  const { used } = step;
  // First the ids kept as they are, so a rewritten id never takes one of them.
  const kept = result.toolCalls.map((call) => {
    const keep = call.toolCallId !== '' && !used.has(call.toolCallId);
    if (keep) used.add(call.toolCallId);
    return keep;
  });
  if (kept.every(Boolean)) return result;
  const toolCalls = result.toolCalls.map((call, position) => {
    if (kept[position] === true) return call;
    const base = `call_${step.index}_${position}`;
    let toolCallId = base;
    for (let suffix = 1; used.has(toolCallId); suffix += 1) toolCallId = `${base}_${suffix}`;
    used.add(toolCallId);
    return { ...call, toolCallId };
  });
  return { ...result, toolCalls };
}

/** Records the tool-call ids of a model step replayed from its checkpoint in `used`. */
export function recordToolCallIds(result: ModelResultV1, used: Set<string>): void {
  for (const call of result.toolCalls) used.add(call.toolCallId);
}
