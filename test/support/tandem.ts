import OpenAI from 'openai';
import { builtinPlugins } from '../../src/plugins/registry.js';
import type { PluginDefinition } from '../../src/plugins/types.js';
import type { ConfigInput } from '../../src/proxy/config.js';
import { validateConfig } from '../../src/proxy/loadConfig.js';
import { createServer, type TandemServer } from '../../src/proxy/server.js';
import type { ModelRegistry } from '../../src/slm/registry.js';

export interface RunningTandem {
  url: string;
  client: OpenAI;
  /** Every log line the server wrote, as raw JSON text. */
  logs: string[];
  server: TandemServer;
  close(): Promise<void>;
}

/** Starts a real Tandem HTTP server on 127.0.0.1 (random port) and an openai SDK client pointed at it. */
export async function startTandem(
  config: ConfigInput,
  opts: { env?: NodeJS.ProcessEnv; plugins?: PluginDefinition[]; apiKey?: string; registry?: ModelRegistry } = {},
): Promise<RunningTandem> {
  const plugins = builtinPlugins();
  for (const p of opts.plugins ?? []) plugins.set(p.id, p);
  const logs: string[] = [];
  const loaded = {
    config: validateConfig({ ...config, server: { port: 0, ...config.server } }, plugins, 'test'),
    baseDir: process.cwd(),
    source: 'test',
  };
  const server = await createServer(loaded, {
    plugins,
    env: opts.env ?? {},
    registry: opts.registry,
    logStream: { write: (s: string) => void logs.push(s) },
  });
  const { url } = await server.listen();
  const client = new OpenAI({
    baseURL: `${url}/v1`,
    apiKey: opts.apiKey ?? 'sk-client-key',
    maxRetries: 0,
    timeout: 20_000,
  });
  // Tests do not wait for stragglers (a fault test may leave a hung upstream request behind).
  return { url, client, logs, server, close: () => server.close(0) };
}

/** Route config sending every model to one upstream URL. */
export const catchAll = (url: string, extra: Record<string, unknown> = {}): ConfigInput => ({
  upstreams: { up: { url, maxRetries: 2, ...extra } },
  routes: [{ model: '*', upstream: 'up' }],
});
