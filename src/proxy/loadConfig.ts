import { readFileSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import type { PluginDefinition } from '../plugins/types.js';
import { ConfigSchema, type TandemConfig } from './config.js';
import { embeddedDefault } from './embedded.js';

export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly issues: ConfigIssue[],
  ) {
    super(
      `${source}: ${issues.length} error(s)\n${issues.map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n')}`,
    );
  }
}

/** What the CLI flags and environment may override. Flags win over the environment, which wins over the file. */
export interface ConfigOverrides {
  host?: string;
  port?: number;
  upstreamUrl?: string;
  upstreamKeyEnv?: string;
}

export interface LoadedConfig {
  config: TandemConfig;
  /** Folder that relative paths in the config resolve against. */
  baseDir: string;
  /** Where the config came from, for messages. */
  source: string;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

export function zodIssues(error: z.ZodError, prefix: readonly PropertyKey[] = []): ConfigIssue[] {
  return error.issues.map((i) => ({ path: formatPath([...prefix, ...i.path]), message: i.message }));
}

export function readConfigFile(file: string): unknown {
  const text = readFileSync(file, 'utf8');
  const ext = extname(file).toLowerCase();
  try {
    return ext === '.json' ? JSON.parse(text) : YAML.parse(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(file, [
      { path: '', message: `not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}` },
    ]);
  }
}

/** Environment variables that stand in for flags. */
export function envOverrides(env: NodeJS.ProcessEnv): ConfigOverrides {
  const out: ConfigOverrides = {};
  if (env.PORT) out.port = Number(env.PORT);
  if (env.TANDEM_HOST) out.host = env.TANDEM_HOST;
  if (env.TANDEM_UPSTREAM_URL) out.upstreamUrl = env.TANDEM_UPSTREAM_URL;
  return out;
}

function applyOverrides(raw: unknown, o: ConfigOverrides): unknown {
  const cfg = (raw && typeof raw === 'object' && !Array.isArray(raw) ? { ...raw } : raw) as Record<string, unknown>;
  if (typeof cfg !== 'object' || cfg === null) return raw;
  if (o.host !== undefined || o.port !== undefined) {
    const server = { ...((cfg.server as object | undefined) ?? {}) } as Record<string, unknown>;
    if (o.host !== undefined) server.host = o.host;
    if (o.port !== undefined) server.port = o.port;
    cfg.server = server;
  }
  if (o.upstreamUrl !== undefined) {
    // `--upstream` defines the upstream named `default` and, unless a catch-all route exists, sends every model there.
    const upstreams = { ...((cfg.upstreams as object | undefined) ?? {}) } as Record<string, Record<string, unknown>>;
    const prev = upstreams.default ?? {};
    upstreams.default = {
      ...prev,
      url: o.upstreamUrl,
      apiKeyEnv: o.upstreamKeyEnv ?? prev.apiKeyEnv ?? 'TANDEM_UPSTREAM_API_KEY',
    };
    cfg.upstreams = upstreams;
    const routes = Array.isArray(cfg.routes) ? [...cfg.routes] : [];
    if (!routes.some((r) => (r as { model?: unknown })?.model === '*'))
      routes.push({ model: '*', upstream: 'default' });
    cfg.routes = routes;
  }
  const none = (v: unknown) => v === undefined || (typeof v === 'object' && v !== null && Object.keys(v).length === 0);
  if (none(cfg.upstreams) && none(cfg.routes)) Object.assign(cfg, embeddedDefault());
  return cfg;
}

/**
 * Validates a raw config: the zod schema first, then what a schema cannot see (names that refer to other blocks,
 * each plugin's own config schema). All problems are reported at once, each with its path.
 */
export function validateConfig(
  raw: unknown,
  plugins: ReadonlyMap<string, PluginDefinition>,
  source = 'config',
): TandemConfig {
  const parsed = ConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(source, zodIssues(parsed.error));
  const config = parsed.data;
  const issues: ConfigIssue[] = [];
  config.routes.forEach((route, i) => {
    const refs: [string, string][] = [[`routes[${i}].upstream`, route.upstream]];
    for (const [j, f] of route.fallback.entries()) refs.push([`routes[${i}].fallback[${j}]`, f]);
    for (const [path, name] of refs) {
      if (!config.upstreams[name]) issues.push({ path, message: `no upstream named '${name}' in upstreams` });
    }
    route.plugins.forEach((ref, j) => {
      const def = plugins.get(ref.use);
      if (!def) {
        issues.push({
          path: `routes[${i}].plugins[${j}].use`,
          message: `unknown plugin '${ref.use}'; known: ${[...plugins.keys()].join(', ')}`,
        });
        return;
      }
      const res = def.configSchema.safeParse(ref.config ?? {});
      if (res.success) ref.config = res.data;
      else issues.push(...zodIssues(res.error, ['routes', i, 'plugins', j, 'config']));
    });
  });
  for (const [name, up] of Object.entries(config.upstreams)) {
    if (up.apiKey && up.apiKeyEnv)
      issues.push({ path: `upstreams.${name}`, message: 'set apiKey or apiKeyEnv, not both' });
  }
  if (issues.length) throw new ConfigError(source, issues);
  return config;
}

export function loadConfig(
  file: string | undefined,
  overrides: ConfigOverrides,
  plugins: ReadonlyMap<string, PluginDefinition>,
): LoadedConfig {
  const raw = file ? readConfigFile(file) : {};
  const source = file ?? '(defaults)';
  const config = validateConfig(applyOverrides(raw, overrides), plugins, source);
  return { config, baseDir: file ? dirname(resolve(file)) : process.cwd(), source };
}
