import type { Request, Response } from 'express';
import { HttpError, toHttpError } from './errors.js';
import type { RequestLocals } from './generate.js';
import type { ServerDeps } from './server.js';
import { drained } from './sse.js';
import { ClientGoneError } from './upstream/errors.js';
import type { RelayRequest } from './upstream/types.js';

const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

/** The `model` of a JSON body, if it has one (embeddings, moderations, ...). */
function modelOf(req: Request): string | undefined {
  const raw = req.body as Buffer | undefined;
  if (!raw?.length || !req.get('content-type')?.includes('json')) return undefined;
  try {
    const j = JSON.parse(raw.toString('utf8')) as { model?: unknown };
    return typeof j?.model === 'string' ? j.model : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every other /v1 endpoint (embeddings, moderations, files, ...) goes to the upstream as it is, so an app that points
 * its base URL at Tandem keeps working for calls Tandem does not interpret. The route is chosen by the body's
 * `model`, else the catch-all route; no plugin runs.
 */
export function relayHandler(deps: ServerDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const locals = res.locals as RequestLocals;
    try {
      if (!METHODS.has(req.method))
        throw new HttpError(404, `Unknown request URL: ${req.method} ${req.path}`, { code: 'unknown_url' });
      const model = modelOf(req);
      const route = model ? deps.router.resolve(model) : deps.router.catchAll();
      if (!route) {
        throw model
          ? new HttpError(404, `The model '${model}' does not exist or no route serves it.`, {
              param: 'model',
              code: 'model_not_found',
            })
          : new HttpError(404, `Unknown request URL: ${req.method} ${req.path} (no catch-all route to relay it to)`, {
              code: 'unknown_url',
            });
      }
      if (!route.upstream.relay) {
        throw new HttpError(
          404,
          `${req.path} is not served by route '${route.id}' (a local model serves chat and completions only).`,
          {
            code: 'unknown_url',
          },
        );
      }
      locals.route = route.id;
      const abort = new AbortController();
      locals.abort = abort;
      const body = req.body as Buffer | undefined;
      const relay: RelayRequest = {
        method: req.method as RelayRequest['method'],
        path: req.originalUrl.replace(/^\/v1/, ''),
        contentType: req.get('content-type'),
        body: body?.length ? body : undefined,
      };
      const out = await route.upstream.relay(relay, {
        signal: abort.signal,
        requestId: locals.requestId,
        clientAuthorization: req.get('authorization'),
      });
      res.statusCode = out.status;
      if (out.contentType) res.setHeader('content-type', out.contentType);
      for await (const chunk of out.body) {
        if (res.destroyed) break;
        if (!res.write(chunk)) await drained(res);
      }
      res.end();
    } catch (err) {
      if (err instanceof ClientGoneError || res.destroyed) {
        res.destroy();
        return;
      }
      deps.sendError(res, toHttpError(err));
    }
  };
}
