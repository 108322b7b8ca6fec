/**
 * A tool result as the text a model reads: a string as it is (an OpenAI client's `tool`
 * message content, a tool's plain-text answer), anything else as JSON. Encoding a string as
 * JSON again would hand the model `"{\"temp\":20}"` for `{"temp":20}`.
 */
export function toolResultText(output: unknown): string {
  return typeof output === 'string' ? output : JSON.stringify(output ?? null);
}
