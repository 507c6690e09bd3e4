import type { JsonObject } from '../plugins/types.js';
import type { GeneratedToken } from '../slm/engine.js';

/** OpenAI's two shapes of per-token log-probabilities, from generated tokens (the local provider's and EFT's). */

export interface LogprobEntry {
  token: string;
  logprob: number | null;
  top: { text: string; logprob: number }[];
}

/** OpenAI's legacy completions `logprobs` object for these tokens, their text offsets counted from `start`. */
export function completionLogprobs(entries: readonly LogprobEntry[], start = 0): JsonObject {
  let offset = start;
  const text_offset = entries.map((e) => {
    const at = offset;
    offset += e.token.length;
    return at;
  });
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) =>
      e.logprob === null ? null : Object.fromEntries(e.top.map((x) => [x.text, x.logprob])),
    ),
    text_offset,
  };
}

export const entryOf = (t: GeneratedToken): LogprobEntry => ({ token: t.text, logprob: t.logprob ?? null, top: t.top });

/** Chat completions' `logprobs` object: each token with its bytes and its most likely alternatives. */
export function chatLogprobs(tokens: readonly GeneratedToken[]): JsonObject {
  return {
    content: tokens.map((t) => ({
      token: t.text,
      logprob: t.logprob ?? 0,
      bytes: t.bytes,
      top_logprobs: t.top.map((x) => ({ token: x.text, logprob: x.logprob, bytes: x.bytes })),
    })),
  };
}
