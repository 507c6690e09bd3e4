import type { JsonObject } from './types.js';

/** Text of a chat message's content: a string, or the text parts of a multi-part content array. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) =>
      part && typeof part === 'object' && typeof (part as JsonObject).text === 'string'
        ? (part as JsonObject).text
        : '',
    )
    .join('\n');
}

/** Every piece of text a request sends upstream: chat messages or completion prompts (token-id prompts have none). */
export function requestTexts(body: JsonObject): string[] {
  if (Array.isArray(body.messages)) return body.messages.map((m) => contentText((m as JsonObject)?.content));
  const p = body.prompt;
  if (typeof p === 'string') return [p];
  if (Array.isArray(p)) return p.filter((x): x is string => typeof x === 'string');
  return [];
}

/** Text of each choice of a non-streamed chat or completion response. */
export function responseTexts(response: JsonObject): string[] {
  const choices = Array.isArray(response.choices) ? (response.choices as JsonObject[]) : [];
  return choices.map((c) => {
    if (typeof c?.text === 'string') return c.text;
    return contentText((c?.message as JsonObject | undefined)?.content);
  });
}

/** Text a streamed chunk adds to its first choice. */
export function chunkDelta(chunk: JsonObject): string {
  const c = Array.isArray(chunk.choices) ? (chunk.choices[0] as JsonObject | undefined) : undefined;
  if (!c) return '';
  if (typeof c.text === 'string') return c.text;
  const content = (c.delta as JsonObject | undefined)?.content;
  return typeof content === 'string' ? content : '';
}
