import OpenAI, { APIConnectionError, APIError } from 'openai';
import type { JsonObject } from '../../plugins/types.js';
import { rawJson } from '../rawJson.js';
import { type LinkedAbort, linkedAbort } from './abort.js';
import { ClientGoneError, classifyUpstreamError, UpstreamError } from './errors.js';
import { SseParser } from './sseReader.js';
import { plainHeaders, send, type TransportRequest } from './transport.js';
import type { CallOptions, RelayRequest, RelayResponse, Upstream } from './types.js';

export interface HttpUpstreamOptions {
  name: string;
  url: string;
  apiKey?: string;
  /** Deadline for a whole non-streamed answer, and for the first byte of a streamed one. */
  timeoutMs: number;
  /** Longest silence allowed between two streamed chunks. */
  streamIdleTimeoutMs: number;
  maxRetries: number;
  /** A Retry-After longer than this is not waited for: the error goes back (or to the fallback) at once. */
  maxRetryAfterMs: number;
  passthroughAuth: boolean;
  headers: Record<string, string>;
}

export interface UpstreamObserver {
  error(upstream: string, kind: string): void;
  retry(upstream: string): void;
}

/** A non-2xx answer as the SDK's APIError for its status, as the SDK itself would raise it. */
async function throwStatusError(res: Response): Promise<never> {
  const text = await res.text().catch(() => '');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {}
  throw APIError.generate(res.status, parsed as object | undefined, parsed ? undefined : text, res.headers);
}

const FINISHED = /"finish_reason"\s*:\s*"/;
const hasFinishReason = (chunk: JsonObject) =>
  Array.isArray(chunk.choices) && chunk.choices.some((c) => (c as JsonObject | null)?.finish_reason != null);

function backoffMs(attempt: number): number {
  // Exponential with up to 25% jitter, as the openai SDK does, capped at 8 s.
  return Math.min(500 * 2 ** attempt, 8000) * (1 - Math.random() * 0.25);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new ClientGoneError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ClientGoneError());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Any OpenAI-compatible server. The official SDK builds each request (URL, auth, its standard headers) and makes
 * the errors (its APIError classes); retries are ours rather than the SDK's so that a long Retry-After is bounded,
 * every retry is counted, and a retry never happens once a stream has begun.
 */
export class HttpUpstream implements Upstream {
  readonly name: string;
  private readonly client: OpenAI;
  private readonly templates = new Map<string, Promise<{ url: string; headers: Record<string, string> }>>();

  constructor(
    private readonly opts: HttpUpstreamOptions,
    private readonly observer: UpstreamObserver,
  ) {
    this.name = opts.name;
    // Only the SDK's request building and error classes are used (see template()); sending, retries and timeouts
    // are ours.
    this.client = new OpenAI({
      baseURL: opts.url,
      // The SDK insists on a key; with none configured the Authorization header is removed below.
      apiKey: opts.apiKey ?? 'unset',
      timeout: opts.timeoutMs,
      defaultHeaders: { ...opts.headers, ...(opts.apiKey ? {} : { Authorization: null }) },
    });
  }

  chat(body: JsonObject, opts: CallOptions) {
    return this.json('/chat/completions', body, opts);
  }
  chatStream(body: JsonObject, opts: CallOptions) {
    return this.stream('/chat/completions', body, opts);
  }
  completion(body: JsonObject, opts: CallOptions) {
    return this.json('/completions', body, opts);
  }
  completionStream(body: JsonObject, opts: CallOptions) {
    return this.stream('/completions', body, opts);
  }

  async listModels(opts: CallOptions): Promise<JsonObject[]> {
    const page = (await this.attempt(opts, async (link) =>
      (await this.send('get', '/models', undefined, opts, link)).json(),
    )) as {
      data?: JsonObject[];
    };
    return Array.isArray(page.data) ? page.data : [];
  }

  /**
   * The SDK's request for a method and path (URL, auth and its standard headers), built once per upstream: each call
   * adds only its body and its own headers. Building it per call through the SDK's request loop, with its debug
   * formatting, was a fifth of a proxied request's CPU time (measured by `npm run bench -- proxy`).
   */
  private template(method: 'get' | 'post', path: string): Promise<{ url: string; headers: Record<string, string> }> {
    const key = `${method} ${path}`;
    let t = this.templates.get(key);
    if (!t) {
      t = this.client
        .buildRequest({ method, path, body: method === 'post' ? {} : undefined })
        .then(({ req, url }) => ({ url, headers: plainHeaders(req.headers) }));
      this.templates.set(key, t);
    }
    return t;
  }

  /** One JSON call to the API: the SDK-built request for its method and path, with this call's body. */
  private async send(
    method: 'get' | 'post',
    path: string,
    body: JsonObject | undefined,
    opts: CallOptions,
    link: LinkedAbort,
  ): Promise<Response> {
    const { url, headers } = await this.template(method, path);
    const json = body === undefined ? undefined : JSON.stringify(body);
    return this.exchange(url, headers, { method: method === 'get' ? 'GET' : 'POST', body: json }, opts, link);
  }

  /**
   * One HTTP exchange, shared by every call: this request's own headers on top of the SDK-built ones; a network
   * failure becomes the SDK's APIConnectionError and a non-2xx answer its APIError for the status, as the SDK itself
   * would raise them.
   */
  private async exchange(
    url: string,
    headers: Record<string, string>,
    req: { method: TransportRequest['method']; body?: string | Buffer; contentType?: string },
    opts: CallOptions,
    link: LinkedAbort,
  ): Promise<Response> {
    const h: Record<string, string> = { ...headers, 'x-request-id': opts.requestId };
    if (req.contentType) h['content-type'] = req.contentType;
    if (this.opts.passthroughAuth && opts.clientAuthorization) h.authorization = opts.clientAuthorization;
    let res: Response;
    try {
      res = await send(url, { method: req.method, headers: h, body: req.body, signal: link.signal });
    } catch (err) {
      if (link.signal.aborted) throw err;
      throw new APIConnectionError({ message: 'Connection error.', cause: err as Error });
    }
    if (!res.ok) await throwStatusError(res);
    return res;
  }

  /**
   * Any other endpoint, body and answer passed through unchanged; the SDK still supplies auth and its headers (the
   * same for every path), and failures before an answer are retried like any call.
   */
  async relay(req: RelayRequest, opts: CallOptions): Promise<RelayResponse> {
    const { headers } = await this.template('get', '/models');
    const url = `${this.client.baseURL.replace(/\/+$/, '')}${req.path}`;
    const res = await this.attempt(opts, (link) => this.exchange(url, headers, req, opts, link));
    return {
      status: res.status,
      contentType: res.headers.get('content-type'),
      body: res.body as unknown as AsyncIterable<Uint8Array>,
    };
  }

  private json(path: string, body: JsonObject, opts: CallOptions): Promise<JsonObject> {
    return this.attempt(
      opts,
      async (link) => (await (await this.send('post', path, body, opts, link)).json()) as JsonObject,
    );
  }

  private async stream(path: string, body: JsonObject, opts: CallOptions): Promise<AsyncIterable<JsonObject>> {
    let link: LinkedAbort | undefined;
    const response = await this.attempt(
      opts,
      async (l) => {
        const r = await this.send('post', path, body, opts, l);
        link = l;
        return r;
      },
      true,
    );
    // attempt() resolved, so link is set; it now times the gaps between chunks.
    return this.events(response.body as unknown as AsyncIterable<Uint8Array>, link as LinkedAbort, opts.signal);
  }

  /** The chunks of an SSE body, with the idle deadline re-armed on every read. */
  private async *events(
    body: AsyncIterable<Uint8Array>,
    link: LinkedAbort,
    client: AbortSignal,
  ): AsyncIterable<JsonObject> {
    const idle = this.opts.streamIdleTimeoutMs;
    link.arm(idle);
    const parser = new SseParser();
    let finished = false;
    let done = false;
    // Events of one network read become chunks together; the body is read to its end even after [DONE], since
    // breaking off destroys the socket's stream with an AbortError whose stack trace costs more than the bytes left.
    const take = (events: string[]): JsonObject[] => {
      const chunks: JsonObject[] = [];
      for (const data of events) {
        if (done) break;
        if (data.startsWith('[DONE]')) {
          finished = done = true;
          break;
        }
        const chunk = JSON.parse(data) as JsonObject;
        if (chunk.error) throw new APIError(undefined, chunk.error, undefined, undefined);
        rawJson.set(chunk, data);
        // A finish_reason other than null: a string check on the raw text, no walk over the parsed chunk.
        finished ||= FINISHED.test(data) && hasFinishReason(chunk);
        chunks.push(chunk);
      }
      return chunks;
    };
    try {
      for await (const bytes of body) {
        link.arm(idle);
        for (const chunk of take(parser.push(bytes))) yield chunk;
      }
      for (const chunk of take(parser.end())) yield chunk;
      // A body that closed cleanly before any choice finished was cut short (a proxy in between dropped it).
      if (!finished && !client.aborted) throw new Error('stream ended before a finish_reason');
    } catch (err) {
      const mapped = classifyUpstreamError(this.name, err, {
        timedOut: link.timedOut(),
        clientAborted: client.aborted,
        timeoutMs: idle,
        midStream: true,
      });
      if (mapped instanceof UpstreamError) this.observer.error(this.name, mapped.kind);
      throw mapped;
    } finally {
      link.dispose();
    }
  }

  /** One call with retries. With keepLink the abort link outlives the call (a stream goes on using it). */
  private async attempt<T>(opts: CallOptions, call: (link: LinkedAbort) => Promise<T>, keepLink = false): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const link = linkedAbort(opts.signal, this.opts.timeoutMs);
      let ok = false;
      try {
        const out = await call(link);
        ok = true;
        return out;
      } catch (err) {
        const mapped = classifyUpstreamError(this.name, err, {
          timedOut: link.timedOut(),
          clientAborted: opts.signal.aborted,
          timeoutMs: this.opts.timeoutMs,
        });
        if (mapped instanceof ClientGoneError) throw mapped;
        this.observer.error(this.name, mapped.kind);
        const wait = mapped.retryAfterMs ?? backoffMs(attempt);
        if (!mapped.retryable || attempt >= this.opts.maxRetries || wait > this.opts.maxRetryAfterMs) throw mapped;
        this.observer.retry(this.name);
        await sleep(wait, opts.signal);
      } finally {
        if (!(ok && keepLink)) link.dispose();
      }
    }
  }
}
