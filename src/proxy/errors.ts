import { ChatTemplateError } from '../slm/tokenizer.js';

/** OpenAI's error body. Every error Tandem returns, on any route, has exactly this shape. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error that already knows the status and body the client should see. */
export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    opts: { type?: string; param?: string | null; code?: string | null; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.status = status;
    this.type = opts.type ?? defaultType(status);
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
    this.headers = opts.headers ?? {};
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function defaultType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return status === 504 ? 'timeout_error' : 'api_error';
  return 'invalid_request_error';
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new HttpError(400, message, { param, code });

/**
 * Turns anything thrown into an HttpError without leaking internals: unknown errors become a generic 500 whose
 * message never includes a stack, a path or a key.
 */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  // The conversation is the client's: a template that refuses it is a bad request, in the template's words.
  if (err instanceof ChatTemplateError)
    return new HttpError(400, err.message, { param: 'messages', code: 'invalid_messages' });
  return new HttpError(500, 'Internal error in Tandem; see the server log for the request id.', {
    type: 'api_error',
    code: 'internal_error',
  });
}
