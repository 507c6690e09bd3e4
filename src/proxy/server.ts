import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { DestinationStream, Logger } from 'pino';
import { Pipeline, type PluginInstance } from '../plugins/pipeline.js';
import { builtinPlugins } from '../plugins/registry.js';
import type { JsonObject, PluginDefinition } from '../plugins/types.js';
import { ModelRegistry } from '../slm/registry.js';
import { proxyAuth, resolveKeys } from './auth.js';
import { ResponseCache } from './cache.js';
import type { TandemConfig } from './config.js';
import { HttpError, toHttpError } from './errors.js';
import { generationHandler, type RequestLocals, sendJson } from './generate.js';
import { jsonBody, parseSize, rawBody } from './jsonBody.js';
import type { LoadedConfig } from './loadConfig.js';
import { createLogger } from './logger.js';
import { Metrics } from './metrics.js';
import { relayHandler } from './relay.js';
import { type ResolvedRoute, Router } from './router.js';
import { UpstreamChain } from './upstream/chain.js';
import { HttpUpstream } from './upstream/http.js';
import { LocalUpstream } from './upstream/local.js';
import type { Upstream } from './upstream/types.js';

export interface ServerDeps {
  config: TandemConfig;
  logger: Logger;
  metrics: Metrics;
  router: Router;
  cache?: ResponseCache;
  sendError(res: Response, err: HttpError, tandem?: JsonObject): void;
}

export interface ServerOptions {
  /** Where logs go (tests capture them); stdout by default. */
  logStream?: DestinationStream;
  plugins?: ReadonlyMap<string, PluginDefinition>;
  env?: NodeJS.ProcessEnv;
  /** Upstreams built elsewhere, by name; they take precedence over config entries. */
  upstreams?: ReadonlyMap<string, Upstream>;
  /** Shared local models (tests reuse one registry across servers). */
  registry?: ModelRegistry;
  /** Load local models at start (default true). */
  warm?: boolean;
}

export interface TandemServer {
  app: express.Express;
  deps: ServerDeps;
  listen(): Promise<{ url: string; port: number; server: Server }>;
  /**
   * Stops accepting connections and lets requests in flight (streams included) finish for up to `graceMs`, then
   * cuts what is left and releases models and plugins.
   */
  close(graceMs?: number): Promise<void>;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

function buildUpstreams(
  config: TandemConfig,
  metrics: Metrics,
  env: NodeJS.ProcessEnv,
  registry: ModelRegistry,
  given?: ReadonlyMap<string, Upstream>,
) {
  const out = new Map<string, Upstream>(given);
  for (const [name, up] of Object.entries(config.upstreams)) {
    if (out.has(name)) continue;
    if (up.url.startsWith('local:')) {
      out.set(name, new LocalUpstream(name, registry, up.url.slice('local:'.length)));
      continue;
    }
    const apiKey = up.apiKey ?? (up.apiKeyEnv ? env[up.apiKeyEnv] : undefined);
    out.set(name, new HttpUpstream({ name, ...up, apiKey: apiKey || undefined }, metrics));
  }
  return out;
}

async function buildRoutes(
  loaded: LoadedConfig,
  upstreams: Map<string, Upstream>,
  plugins: ReadonlyMap<string, PluginDefinition>,
  metrics: Metrics,
  logger: Logger,
  models: ModelRegistry,
): Promise<ResolvedRoute[]> {
  const routes: ResolvedRoute[] = [];
  for (const r of loaded.config.routes) {
    const instances: PluginInstance[] = [];
    const chain = [r.upstream, ...r.fallback].map((n) => upstreams.get(n) as Upstream);
    const upstream = chain.length === 1 ? (chain[0] as Upstream) : new UpstreamChain(chain);
    for (const ref of r.plugins) {
      const def = plugins.get(ref.use);
      if (!def) throw new Error(`unknown plugin '${ref.use}'`);
      const hooks = await def.create(ref.config, {
        logger: logger.child({ plugin: def.id }),
        baseDir: loaded.baseDir,
        models,
        route: { model: r.model, upstream, upstreamModel: r.upstreamModel },
        metrics,
      });
      instances.push({ id: def.id, failMode: ref.failMode ?? def.defaultFailMode, timeoutMs: ref.timeoutMs, hooks });
    }
    routes.push({
      id: r.model,
      upstream,
      upstreamModel: r.upstreamModel,
      pipeline: new Pipeline(instances, metrics),
      cache: r.cache,
      isGlob: r.model.includes('*'),
    });
  }
  return routes;
}

export async function createServer(loaded: LoadedConfig, opts: ServerOptions = {}): Promise<TandemServer> {
  const { config } = loaded;
  const env = opts.env ?? process.env;
  const logger = createLogger(env.TANDEM_LOG_LEVEL ?? config.logging.level, opts.logStream);
  const metrics = new Metrics();
  const plugins = opts.plugins ?? builtinPlugins();
  const registry = opts.registry ?? new ModelRegistry(config.models, loaded.baseDir);
  metrics.observeLocalModels(() => registry.stats());
  const upstreams = buildUpstreams(config, metrics, env, registry, opts.upstreams);
  // Local models load now: a missing or corrupt model file stops the start with its name, not the first request.
  if (opts.warm !== false) {
    await Promise.all([...upstreams.values()].map((u) => (u instanceof LocalUpstream ? u.warm() : undefined)));
  }
  const routes = await buildRoutes(loaded, upstreams, plugins, metrics, logger, registry);
  const router = new Router(routes);
  const cache = config.cache.enabled ? new ResponseCache(config.cache) : undefined;
  const strict = config.server.strictOpenAI;

  const sendError = (res: Response, err: HttpError, tandem?: JsonObject) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
    sendJson(res, err.status, err.toBody(), tandem && !strict ? { tandem } : undefined);
  };
  const deps: ServerDeps = { config, logger, metrics, router, cache, sendError };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', false);

  // Request id, one log line and metrics per request.
  app.use((req: Request, res: Response, next: NextFunction) => {
    const start = performance.now();
    const given = req.get('x-request-id');
    const requestId = given && REQUEST_ID.test(given) ? given : randomUUID();
    const locals = res.locals as RequestLocals;
    locals.requestId = requestId;
    res.setHeader('x-request-id', requestId);
    res.on('close', () => {
      if (!res.writableFinished) locals.abort?.abort();
      const seconds = (performance.now() - start) / 1000;
      const path = req.path;
      const endpoint = path === '/v1/chat/completions' ? 'chat' : path === '/v1/completions' ? 'completions' : 'other';
      const status = res.writableFinished ? res.statusCode : 499;
      metrics.requests.inc({ endpoint, route: locals.route ?? '', status: String(status) });
      const stream = String(res.getHeader('content-type')).startsWith('text/event-stream');
      metrics.latency.observe({ endpoint, stream: String(stream) }, seconds);
      if (path === '/healthz' || path === '/metrics' || !logger.isLevelEnabled('info')) return;
      logger.info(
        {
          reqId: requestId,
          method: req.method,
          path,
          status,
          ms: Math.round(seconds * 10000) / 10,
          ...(locals.route !== undefined && { route: locals.route }),
          ...(locals.cache && { cache: locals.cache }),
          ...(locals.verdict && { checks: locals.verdict }),
        },
        'request',
      );
    });
    next();
  });

  // The two hot endpoints first, each with its own middleware, so a request walks as few router layers as possible.
  const auth = proxyAuth(resolveKeys(config.auth.keys, env), sendError);
  const bodyLimit = parseSize(config.server.bodyLimit);
  const body = jsonBody(bodyLimit);
  app.post('/v1/chat/completions', auth, body, generationHandler('chat', deps));
  app.post('/v1/completions', auth, body, generationHandler('completions', deps));
  app.get('/v1/models', auth, async (_req, res) => {
    res.json({ object: 'list', data: await listModels(routes, res.locals as RequestLocals) });
  });
  // OpenAI's "retrieve model" (the SDK's models.retrieve): ids may hold a slash (org/name), so the rest of the path.
  app.get('/v1/models/*model', auth, async (req, res, next) => {
    const id = (req.params as { model: string[] }).model.join('/');
    const found = (await listModels(routes, res.locals as RequestLocals)).find((m) => m.id === id);
    if (found) return void res.json(found);
    // A catch-all route's upstream may know models it did not list: it answers for itself.
    if (router.catchAll()) return next();
    sendError(res, new HttpError(404, `The model '${id}' does not exist`, { param: 'model', code: 'model_not_found' }));
  });
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', routes: routes.map((r) => r.id) });
  });
  app.get('/metrics', async (_req, res) => {
    res.set('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  app.all('/v1/*rest', auth, rawBody(bodyLimit), relayHandler(deps));

  app.use((req: Request, res: Response) => {
    sendError(res, new HttpError(404, `Unknown request URL: ${req.method} ${req.path}`, { code: 'unknown_url' }));
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    sendError(res, err instanceof HttpError ? err : logged(err, logger, res));
  });

  let server: Server | undefined;
  return {
    app,
    deps,
    listen: () =>
      new Promise((resolve, reject) => {
        const s = app.listen(config.server.port, config.server.host, (err?: Error) => {
          if (err) return reject(err);
          server = s;
          const { port } = s.address() as AddressInfo;
          const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
          resolve({ url: `http://${host}:${port}`, port, server: s });
        });
        s.on('error', reject);
      }),
    async close(graceMs = 10_000) {
      if (server) {
        const s = server;
        const drained = new Promise<void>((r) => s.close(() => r()));
        s.closeIdleConnections();
        const cut = setTimeout(() => s.closeAllConnections(), graceMs);
        await drained;
        clearTimeout(cut);
      }
      await Promise.all(routes.map((r) => r.pipeline.close()));
      await Promise.all([...upstreams.values()].map((u) => u.close?.()));
      if (!opts.registry) await registry.close();
      logger.flush();
    },
  };
}

function logged(err: unknown, logger: Logger, res: Response): HttpError {
  logger.error({ reqId: (res.locals as RequestLocals).requestId, err }, 'unhandled error');
  return toHttpError(err);
}

/** Models the client may ask for: every exact route name, plus what upstreams behind catch-all routes list. */
async function listModels(routes: ResolvedRoute[], locals: RequestLocals): Promise<JsonObject[]> {
  const seen = new Map<string, JsonObject>();
  for (const r of routes) {
    if (!r.isGlob && !seen.has(r.id)) seen.set(r.id, { id: r.id, object: 'model', created: 0, owned_by: 'tandem' });
  }
  const globs = routes.filter((r) => r.isGlob);
  const lists = await Promise.all(
    globs.map((r) =>
      r.upstream
        .listModels({ signal: AbortSignal.timeout(5000), requestId: locals.requestId })
        .catch(() => [] as JsonObject[]),
    ),
  );
  for (const list of lists) {
    for (const m of list) if (typeof m.id === 'string' && !seen.has(m.id)) seen.set(m.id, m);
  }
  return [...seen.values()];
}
