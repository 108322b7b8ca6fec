import OpenAI from 'openai';

/** An official OpenAI client for a Brigade server, retrying only when asked to. */
export function openAiClient(baseUrl: string, secret: string, maxRetries = 0): OpenAI {
  return new OpenAI({ apiKey: secret, baseURL: `${baseUrl}/v1`, maxRetries });
}

/** The `APIError` a request failed with; throws if it succeeded or failed otherwise. */
export async function failureOf(
  promise: Promise<unknown>,
): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof OpenAI.APIError) return error;
    throw error;
  }
  throw new Error('the request succeeded');
}

/** Every item of a stream (Node 20 has no `Array.fromAsync`). */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

/** A function tool the local model calls when told `call get_weather {json}`. */
export const weatherTool = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city.',
    parameters: { type: 'object', properties: { city: { type: 'string' } } },
  },
};
