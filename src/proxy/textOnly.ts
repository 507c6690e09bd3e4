import type { JsonObject } from '../plugins/types.js';
import { HttpError } from './errors.js';

/**
 * Refuses what a decoder that only writes text (the local provider, EFT) would silently not honour. Plain text is a
 * valid answer under tool_choice 'auto' (the model chose not to call a tool), but a required tool call or guaranteed
 * JSON is a contract the client relies on: text it cannot parse would break it later and less clearly than a 400 now.
 * `who` starts the message, e.g. 'This model is served locally and'.
 */
export function refuseUnhonoured(body: JsonObject, who: string): void {
  // An image or audio part dropped on the way to a text-only model changes the question without telling anyone.
  const messages = Array.isArray(body.messages) ? (body.messages as JsonObject[]) : [];
  for (const [i, m] of messages.entries()) {
    if (!Array.isArray(m?.content)) continue;
    for (const [j, part] of (m.content as JsonObject[]).entries()) {
      // An assistant turn in the history may hold a refusal part: text too.
      if (part?.type === 'text' || part?.type === 'refusal') continue;
      throw new HttpError(
        400,
        `${who} reads text only, so content part '${String(part?.type)}' cannot be honoured; send its text instead.`,
        { param: `messages[${i}].content[${j}]`, code: 'unsupported_content' },
      );
    }
  }
  // tool_choice, or the legacy function_call naming a function: a call the answer must make.
  for (const param of ['tool_choice', 'function_call'] as const) {
    const choice = body[param];
    if (choice === 'required' || (choice !== null && typeof choice === 'object'))
      throw new HttpError(
        400,
        `${who} answers in text only: it does not call tools, so a required tool call (${param}) cannot be honoured.`,
        { param, code: 'unsupported_parameter' },
      );
  }
  const format = (body.response_format as JsonObject | undefined)?.type;
  if (format !== undefined && format !== 'text')
    throw new HttpError(
      400,
      `${who} does not constrain its output, so response_format '${String(format)}' (guaranteed JSON) cannot be honoured; ask for JSON in the messages and use 'text'.`,
      { param: 'response_format', code: 'unsupported_parameter' },
    );
}

/**
 * Legacy completions options the in-process decoders (local models, EFT) do not implement; dropping them would change
 * what comes back (best_of picks among more samples than it returns, suffix asks for an insertion), so they are
 * refused unless neutral. `what` names the decoder, e.g. 'local models'.
 */
export function refuseCompletionOptions(body: JsonObject, what: string): void {
  const n = typeof body.n === 'number' ? body.n : 1;
  if (typeof body.best_of === 'number' && body.best_of > n)
    throw new HttpError(400, `best_of is not implemented for ${what}: ask for n choices instead.`, {
      param: 'best_of',
      code: 'unsupported_parameter',
    });
  if (typeof body.suffix === 'string' && body.suffix.length > 0)
    throw new HttpError(400, `suffix (insertion) is not implemented for ${what}.`, {
      param: 'suffix',
      code: 'unsupported_parameter',
    });
}
