import type { JsonObject } from './types.js';

/** Text of a chat message's content: a string, or the text (and refusal) parts of a multi-part content array. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) => {
      const p = part && typeof part === 'object' ? (part as JsonObject) : {};
      return typeof p.text === 'string' ? p.text : typeof p.refusal === 'string' ? p.refusal : '';
    })
    .join('\n');
}

/** The string values inside JSON text (keys and punctuation would only blur what a checker reads), else the text. */
function jsonStrings(text: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return text;
  }
  // A stack, not recursion: a client's JSON may nest deeper than the call stack goes.
  const out: string[] = [];
  const todo: unknown[] = [parsed];
  while (todo.length) {
    const v = todo.pop();
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) for (let i = v.length - 1; i >= 0; i--) todo.push(v[i]);
    else if (v && typeof v === 'object') {
      const values = Object.values(v);
      for (let i = values.length - 1; i >= 0; i--) todo.push(values[i]);
    }
  }
  return out.join('\n');
}

/** Arguments of a message's tool calls (and of the legacy function_call): text a client can write too. */
function toolArguments(m: JsonObject | undefined): string[] {
  const calls = Array.isArray(m?.tool_calls) ? (m.tool_calls as JsonObject[]) : [];
  const fns = [...calls.map((c) => c?.function as JsonObject | undefined), m?.function_call as JsonObject | undefined];
  return fns.flatMap((f) => (typeof f?.arguments === 'string' && f.arguments ? [jsonStrings(f.arguments)] : []));
}

/** A chat message's texts: its content, then its tool-call arguments. */
export function messageTexts(m: JsonObject | undefined): string[] {
  return [contentText(m?.content), ...toolArguments(m)];
}

/**
 * Every piece of text a request sends upstream: each chat message's content then its tool-call arguments, or
 * completion prompts (token-id prompts have none).
 */
export function requestTexts(body: JsonObject): string[] {
  if (Array.isArray(body.messages)) return body.messages.flatMap((m) => messageTexts(m as JsonObject | undefined));
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
