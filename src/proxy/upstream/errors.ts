import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { HttpError } from '../errors.js';

/** An upstream failure as the client should see it, plus what the retry and fallback logic needs to know. */
export class UpstreamError extends HttpError {
  /** 408/409/429/5xx, connection errors and timeouts: worth another attempt or another upstream. */
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly upstream: string;
  /** Short label for metrics: the status, 'timeout', 'connection' or 'bad_response'. */
  readonly kind: string;

  constructor(
    upstream: string,
    status: number,
    message: string,
    opts: {
      retryable: boolean;
      kind: string;
      retryAfterMs?: number;
      type?: string;
      param?: string | null;
      code?: string | null;
    },
  ) {
    const headers: Record<string, string> = {};
    if (opts.retryAfterMs !== undefined) headers['retry-after'] = String(Math.ceil(opts.retryAfterMs / 1000));
    super(status, message, { type: opts.type, param: opts.param, code: opts.code, headers });
    this.upstream = upstream;
    this.retryable = opts.retryable;
    this.retryAfterMs = opts.retryAfterMs;
    this.kind = opts.kind;
  }
}

/** Thrown when the client went away: nothing is sent back and nothing is retried. */
export class ClientGoneError extends Error {
  constructor() {
    super('client closed the request');
  }
}

const RETRYABLE_STATUS = (s: number) => s === 408 || s === 409 || s === 429 || s >= 500;

function retryAfterMs(headers: Headers | undefined): number | undefined {
  const ms = headers?.get('retry-after-ms');
  if (ms && !Number.isNaN(Number.parseFloat(ms))) return Number.parseFloat(ms);
  const after = headers?.get('retry-after');
  if (!after) return undefined;
  const secs = Number.parseFloat(after);
  if (!Number.isNaN(secs)) return secs * 1000;
  const at = Date.parse(after);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/**
 * Maps whatever the SDK or the network threw to an UpstreamError. `timedOut` says our own deadline fired, which the
 * SDK reports as a user abort; `clientAborted` says the client disconnected.
 */
export function classifyUpstreamError(
  upstream: string,
  err: unknown,
  state: { timedOut: boolean; clientAborted: boolean; timeoutMs: number; midStream?: boolean },
): UpstreamError | ClientGoneError {
  if (state.clientAborted) return new ClientGoneError();
  if (state.timedOut || err instanceof APIConnectionTimeoutError) {
    const what = state.midStream ? 'sent nothing for' : 'did not answer within';
    return new UpstreamError(upstream, 504, `Upstream '${upstream}' ${what} ${state.timeoutMs} ms`, {
      retryable: !state.midStream,
      kind: 'timeout',
      type: 'timeout_error',
      code: 'upstream_timeout',
    });
  }
  if (err instanceof APIUserAbortError) return new ClientGoneError();
  if (err instanceof APIConnectionError) {
    return new UpstreamError(upstream, 502, `Could not reach upstream '${upstream}'`, {
      retryable: true,
      kind: 'connection',
      type: 'api_error',
      code: 'upstream_unreachable',
    });
  }
  if (err instanceof APIError && err.status !== undefined) {
    const body = (err.error ?? {}) as Record<string, unknown>;
    const message = str(body.message) ?? `Upstream '${upstream}' returned status ${err.status}`;
    return new UpstreamError(upstream, err.status, message, {
      retryable: RETRYABLE_STATUS(err.status),
      kind: String(err.status),
      retryAfterMs: retryAfterMs(err.headers),
      type: str(body.type) ?? undefined,
      param: str(body.param),
      code: str(body.code),
    });
  }
  if (err instanceof APIError) {
    // An error event inside an SSE stream: the SDK gives no status.
    const body = (err.error ?? {}) as Record<string, unknown>;
    return new UpstreamError(upstream, 502, str(body.message) ?? `Upstream '${upstream}' sent an error event`, {
      retryable: false,
      kind: 'stream_error',
      type: str(body.type) ?? 'api_error',
      code: str(body.code),
    });
  }
  if (err instanceof SyntaxError) {
    return new UpstreamError(upstream, 502, `Upstream '${upstream}' returned malformed JSON`, {
      retryable: false,
      kind: 'bad_response',
      type: 'api_error',
      code: 'bad_upstream_response',
    });
  }
  const where = state.midStream ? 'connection to upstream was lost mid-stream' : 'upstream request failed';
  return new UpstreamError(upstream, 502, `The ${where} ('${upstream}')`, {
    retryable: !state.midStream,
    kind: 'connection',
    type: 'api_error',
    code: 'upstream_connection_lost',
  });
}
