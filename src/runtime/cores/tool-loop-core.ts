import type { ContentPartV1, CorePluginV1, MessageV1 } from '../../plugin-api/index.ts';

/**
 * The built-in `tool-loop` core: model → tool calls (independent calls run in parallel) →
 * model … until the model answers without tool calls or `maxSteps` model calls were made.
 */
export const toolLoopCore: CorePluginV1 = {
  specificationVersion: 'core-v1',
  id: 'tool-loop',
  async run(context) {
    const messages: MessageV1[] = [
      ...(context.instructions.length > 0
        ? [
            {
              role: 'system' as const,
              content: [{ type: 'text' as const, text: context.instructions }],
              provenance: 'system' as const,
            },
          ]
        : []),
      ...context.messages,
    ];
    let lastText = '';
    for (let step = 0; step < context.maxSteps; step += 1) {
      context.signal.throwIfAborted();
      context.emit({ type: 'step-started', step });
      const result = await context.model.generate({
        messages,
        tools: context.tools.available,
        onTextDelta: (text) => context.emit({ type: 'message-delta', text }),
      });
      context.emit({ type: 'step-finished', step });
      lastText = result.text;
      if (result.toolCalls.length === 0) {
        return {
          text: result.text,
          finishReason: result.finishReason === 'length' ? 'length' : 'stop',
        };
      }
      const callParts: ContentPartV1[] = result.toolCalls.map((call) => ({
        type: 'tool-call',
        ...call,
      }));
      messages.push({
        role: 'assistant',
        content:
          result.text.length > 0 ? [{ type: 'text', text: result.text }, ...callParts] : callParts,
        provenance: 'assistant',
      });
      const outcomes = await Promise.all(result.toolCalls.map((call) => context.tools.call(call)));
      result.toolCalls.forEach((call, index) => {
        const outcome = outcomes[index];
        messages.push({
          role: 'tool',
          content: [
            {
              type: 'tool-result',
              toolCallId: call.toolCallId,
              toolName: call.toolName,
              output:
                outcome?.status === 'ok'
                  ? outcome.output
                  : {
                      error: outcome?.message ?? 'no result',
                      ...(outcome?.code === undefined ? {} : { code: outcome.code }),
                    },
              isError: outcome?.status !== 'ok',
            },
          ],
          provenance: `tool:${call.toolName}`,
        });
      });
    }
    return { text: lastText, finishReason: 'max-steps' };
  },
};
