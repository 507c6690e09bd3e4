import type { Request, Response } from 'express';
import type { z } from 'zod';
import { mergeReports } from '../plugins/pipeline.js';
import { chunkDelta } from '../plugins/text.js';
import type { CheckReport, DecodeResult, Endpoint, JsonObject, RequestContext } from '../plugins/types.js';
import { ResponseCache } from './cache.js';
import { HttpError, toHttpError } from './errors.js';
import { toJson } from './rawJson.js';
import { ChatRequestSchema, CompletionRequestSchema, parseRequest } from './requestSchemas.js';
import type { ResolvedRoute } from './router.js';
import type { ServerDeps } from './server.js';
import { SseWriter } from './sse.js';
import { ClientGoneError } from './upstream/errors.js';
import type { CallOptions } from './upstream/types.js';

/** JSON without express's res.json/res.send machinery (content-type negotiation, etag): this is the hot path. */
export function sendJson(res: Response, status: number, body: object, extra?: Record<string, unknown>): void {
  const text = toJson(body, extra);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.end(text);
}

/** What the request log line and metrics report about one generation request. */
export interface RequestLocals {
  requestId: string;
  abort?: AbortController;
  route?: string;
  cache?: 'hit' | 'miss';
  verdict?: string;
}

const checksHeader = (reports: CheckReport[]) =>
  reports
    .map((r) => `${r.id}@${r.hook}=${r.verdict}`)
    .join(', ')
    .slice(0, 4000);

function blockedError(blocked: CheckReport[]): HttpError {
  // A check that names categories is summarised by them (its scores are in tandem.checks); others by their data.
  const reason = (b: CheckReport) => {
    if (b.error) return b.error;
    const cats = b.data?.categories;
    if (Array.isArray(cats)) return `categories ${cats.join(', ')}`;
    return b.data ? JSON.stringify(b.data) : '';
  };
  const parts = new Map<string, string>();
  for (const b of blocked) if (!parts.has(b.id)) parts.set(b.id, reason(b));
  const message = [...parts].map(([id, why]) => (why ? `${id}: ${why}` : id)).join('; ');
  return new HttpError(400, `Blocked by ${message}`, { type: 'guardrail_blocked', code: 'guardrail_blocked' });
}

/** POST /v1/chat/completions and /v1/completions: validation, routing, plugins, cache, upstream, relay. */
export function generationHandler(endpoint: Endpoint, deps: ServerDeps) {
  const schema: z.ZodType<JsonObject> = endpoint === 'chat' ? ChatRequestSchema : CompletionRequestSchema;
  const strict = deps.config.server.strictOpenAI;

  return async (req: Request, res: Response): Promise<void> => {
    const locals = res.locals as RequestLocals;
    const parsed = parseRequest(schema, req.body);
    if (parsed instanceof HttpError) return deps.sendError(res, parsed);
    const { tandem: options, ...body } = parsed as JsonObject & { tandem?: JsonObject };
    const model = body.model as string;
    const route = deps.router.resolve(model);
    if (!route) {
      return deps.sendError(
        res,
        new HttpError(404, `The model '${model}' does not exist or no route serves it.`, {
          param: 'model',
          code: 'model_not_found',
        }),
      );
    }
    locals.route = route.id;

    // The request-log middleware aborts this when the client goes away before the response is done.
    const abort = new AbortController();
    locals.abort = abort;
    const ctx: RequestContext = {
      requestId: locals.requestId,
      endpoint,
      model,
      stream: body.stream === true,
      options: options ?? {},
      logger: deps.logger,
      state: new Map(),
    };
    const call: CallOptions = {
      signal: abort.signal,
      requestId: locals.requestId,
      clientAuthorization: req.get('authorization'),
    };
    const checks: CheckReport[] = [];
    const sse = new SseWriter(res);

    try {
      const reqRun = await route.pipeline.onRequest(ctx, body, abort.signal);
      checks.push(...reqRun.reports);
      if (reqRun.blocked.length) throw blockedError(reqRun.blocked);
      const upBody = route.upstreamModel ? { ...reqRun.value, model: route.upstreamModel } : reqRun.value;
      if (ctx.stream) await streamAnswer(route, ctx, upBody, call, checks, sse, locals, strict);
      else await jsonAnswer(route, ctx, upBody, body, call, checks, res, strict, deps);
    } catch (err) {
      if (err instanceof ClientGoneError || abort.signal.aborted) {
        res.destroy();
        return;
      }
      const httpErr = toHttpError(err);
      if (httpErr.status >= 500 && !(err instanceof HttpError))
        deps.logger.error({ reqId: locals.requestId, err }, 'request failed');
      locals.verdict = worstVerdict(checks);
      if (sse.started) {
        await sse.error(httpErr.toBody());
      } else {
        if (checks.length) res.set('x-tandem-checks', checksHeader(checks));
        deps.sendError(res, httpErr, strict ? undefined : { request_id: locals.requestId, checks });
      }
    }
  };
}

function worstVerdict(checks: CheckReport[]): string {
  if (checks.some((c) => c.verdict === 'block')) return 'block';
  if (checks.some((c) => c.verdict === 'flag')) return 'flag';
  return checks.length ? 'pass' : 'none';
}

async function decode(
  route: ResolvedRoute,
  ctx: RequestContext,
  body: JsonObject,
  call: CallOptions,
): Promise<DecodeResult> {
  const decoder = route.pipeline.decoder?.hooks.decode;
  if (decoder) return decoder({ ctx, body, upstream: route.upstream, signal: call.signal });
  const chat = ctx.endpoint === 'chat';
  if (ctx.stream) {
    return {
      kind: 'stream',
      chunks: await (chat ? route.upstream.chatStream(body, call) : route.upstream.completionStream(body, call)),
    };
  }
  return { kind: 'json', body: await (chat ? route.upstream.chat(body, call) : route.upstream.completion(body, call)) };
}

async function jsonAnswer(
  route: ResolvedRoute,
  ctx: RequestContext,
  body: JsonObject,
  clientBody: JsonObject,
  call: CallOptions,
  checks: CheckReport[],
  res: Response,
  strict: boolean,
  deps: ServerDeps,
): Promise<void> {
  const locals = res.locals as RequestLocals;
  const useCache = deps.cache !== undefined && route.cache && ResponseCache.cacheable(clientBody);
  // Keyed on the request as the client sent it, before plugins rewrote it: two requests that differ only in what a
  // plugin redacted must not share an answer. Per-request plugin options (e.g. `tandem.eft.beta`) join the key.
  const keyed = Object.keys(ctx.options).length ? { ...clientBody, tandem: ctx.options } : clientBody;
  const key = useCache ? deps.cache?.key(route.id, ctx.endpoint, keyed) : undefined;
  let response = key ? deps.cache?.get(key) : undefined;
  if (key) {
    locals.cache = response ? 'hit' : 'miss';
    deps.metrics.cache.inc({ result: locals.cache });
    res.setHeader('x-tandem-cache', locals.cache);
  }
  let annotations: JsonObject = {};
  if (!response) {
    const out = await decode(route, ctx, body, call);
    if (out.kind !== 'json') throw new HttpError(500, 'The decoding plugin streamed a non-streaming request.');
    annotations = out.annotations?.() ?? {};
    const respRun = await route.pipeline.onResponse(ctx, body, out.body, call.signal);
    checks.push(...respRun.reports);
    if (respRun.blocked.length) throw blockedError(respRun.blocked);
    response = respRun.value;
    if (key) {
      // Stored as upstream and plugins shaped it, without this request's own `tandem` annotations.
      deps.cache?.set(key, response);
    }
  }
  locals.verdict = worstVerdict(checks);
  if (checks.length) res.setHeader('x-tandem-checks', checksHeader(checks));
  if (strict) return sendJson(res, 200, response);
  const tandem: JsonObject = { request_id: ctx.requestId, checks, ...annotations };
  if (key) tandem.cache = locals.cache;
  sendJson(res, 200, response, { tandem });
}

async function streamAnswer(
  route: ResolvedRoute,
  ctx: RequestContext,
  body: JsonObject,
  call: CallOptions,
  checks: CheckReport[],
  sse: SseWriter,
  locals: RequestLocals,
  strict: boolean,
): Promise<void> {
  const out = await decode(route, ctx, body, call);
  if (out.kind !== 'stream') throw new HttpError(500, 'The decoding plugin did not stream a streaming request.');
  sse.start(checks.length ? { 'x-tandem-checks': checksHeader(checks) } : {});
  const pipeline = route.pipeline;
  const streamChecks = new Map<string, CheckReport>();
  let text = '';
  let last: JsonObject | undefined;
  const emit = async (chunks: JsonObject[]) => {
    for (const c of chunks) await sse.send(c);
  };
  const runHooks = async (chunk: JsonObject | null, delta: string) => {
    const run = await pipeline.onStreamChunk(ctx, { chunk, delta, text }, call.signal);
    mergeReports(streamChecks, run.reports);
    if (run.blocked.length) {
      checks.push(...streamChecks.values());
      throw blockedError(run.blocked);
    }
    await emit(run.value);
  };

  for await (const chunk of out.chunks) {
    if (sse.closed) throw new ClientGoneError();
    last = chunk;
    if (!pipeline.hasStreamHooks) {
      const blocked = sse.send(chunk);
      if (blocked) await blocked;
      continue;
    }
    const delta = chunkDelta(chunk);
    text += delta;
    await runHooks(chunk, delta);
  }
  if (pipeline.hasStreamHooks) await runHooks(null, '');
  checks.push(...streamChecks.values());
  locals.verdict = worstVerdict(checks);
  if (!strict) {
    // Shaped like the usage chunk (empty choices) so clients that iterate choices skip it unharmed.
    await sse.send({
      id: last?.id ?? ctx.requestId,
      object: ctx.endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created: last?.created ?? Math.floor(Date.now() / 1000),
      model: last?.model ?? ctx.model,
      choices: [],
      tandem: { request_id: ctx.requestId, checks, ...out.annotations?.() },
    });
  }
  sse.done();
}
