import { describe, expect, it } from 'vitest';
import { AppError } from '../../domain/errors.ts';
import { toOpenAiError } from './openai-error.ts';

const run = {
  threadId: '11111111-1111-4111-8111-111111111111',
  runId: '22222222-2222-4222-8222-222222222222',
};

describe('toOpenAiError', () => {
  it('answers a model the client named that does not exist with 404 model_not_found', () => {
    const rendered = toOpenAiError(new AppError('unknown_model', "No model named 'x'."));
    expect(rendered.status).toBe(404);
    expect(rendered.body.error).toMatchObject({ code: 'model_not_found', param: 'model' });
    expect(rendered.headers['x-brigade-run-id']).toBeUndefined();
  });

  it("answers an agent run that failed on the agent's model with the run's 422, naming the run", () => {
    // The agent exists (the client named it rightly); its model route went away since.
    for (const code of ['unknown_model', 'agent_not_found'] as const) {
      const rendered = toOpenAiError(
        new AppError(code, "No model route or provider named 't1'.", {
          details: { ...run, retry: false },
        }),
      );
      expect(rendered.status).toBe(422);
      expect(rendered.body.error).toMatchObject({
        type: 'invalid_request_error',
        code,
        param: null,
      });
      expect(rendered.headers).toMatchObject({
        'x-brigade-thread-id': run.threadId,
        'x-brigade-run-id': run.runId,
        'x-should-retry': 'false',
      });
    }
  });

  it('names the run on every other error that ended an agent completion', () => {
    const rendered = toOpenAiError(
      new AppError('budget_exceeded', 'Spent.', { details: { ...run, retry: false } }),
    );
    expect(rendered.status).toBe(429);
    expect(rendered.headers['x-brigade-run-id']).toBe(run.runId);
    expect(rendered.body.error).not.toHaveProperty('runId');
  });
});
