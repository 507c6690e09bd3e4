import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Metrics } from '../proxy/metrics.js';
import type { Upstream } from '../proxy/upstream/types.js';
import type { ModelRegistry } from '../slm/registry.js';

export type JsonObject = Record<string, unknown>;
export type Verdict = 'pass' | 'flag' | 'block';
export type FailMode = 'open' | 'closed';
export type Endpoint = 'chat' | 'completions';

/** What one check says. `transformed` carries the replacement (body, response or chunks) when the check rewrote it. */
export interface CheckOutcome<T = unknown> {
  /** Short name; the published id is `${pluginId}.${check}`. */
  check: string;
  verdict: Verdict;
  data?: JsonObject;
  transformed?: T;
  /** The check's own time when a hook returns several outcomes timed apart; default: the hook's whole time. */
  latencyMs?: number;
}

/** A check outcome as reported to the client in `tandem.checks` and `x-tandem-checks`. */
export interface CheckReport {
  id: string;
  hook: 'request' | 'response' | 'stream';
  verdict: Verdict;
  transformed: boolean;
  latency_ms: number;
  data?: JsonObject;
  error?: string;
}

export interface RequestContext {
  readonly requestId: string;
  readonly endpoint: Endpoint;
  /** The model name the client asked for. */
  readonly model: string;
  readonly stream: boolean;
  /** Per-request options from the body's `tandem` field, removed before the upstream call. */
  readonly options: JsonObject;
  readonly logger: Logger;
  /** Per-request scratch space for a plugin (e.g. a redaction map to restore later); never logged. */
  readonly state: Map<string, unknown>;
}

export interface HookArgs {
  ctx: RequestContext;
  /** Fires on timeout or client disconnect; long-running checks should stop early. */
  signal: AbortSignal;
}

/** One streamed chunk, plus the text of choice 0 so far, for windowed checks. `chunk` is null at end of stream. */
export interface StreamEvent {
  chunk: JsonObject | null;
  /** Text this chunk adds to choice 0 (content or text), '' if none. */
  delta: string;
  /** All text of choice 0 so far, this chunk included. */
  text: string;
}

/** `annotations` (read once the answer is complete) join the response's `tandem` field, e.g. `tandem.eft`. */
export type DecodeResult =
  | { kind: 'json'; body: JsonObject; annotations?: () => JsonObject }
  | { kind: 'stream'; chunks: AsyncIterable<JsonObject>; annotations?: () => JsonObject };

export interface DecodeArgs extends HookArgs {
  body: JsonObject;
  /** The route's upstream chain, with retries and fallback applied. */
  upstream: Upstream;
}

export type Outcomes<T> = CheckOutcome<T> | CheckOutcome<T>[];

/**
 * Hooks never mutate what they are given: a change is a new object returned as `transformed`. (Unchanged upstream
 * objects are written back from their arrival text, so an in-place edit would be lost.)
 */
export interface PluginHooks {
  /** Inspect, transform (transformed = new body) or deny the request. */
  onRequest?(args: HookArgs & { body: JsonObject }): Promise<Outcomes<JsonObject>>;
  /** Inspect, transform (transformed = new response) or annotate a non-streamed response. */
  onResponse?(args: HookArgs & { body: JsonObject; response: JsonObject }): Promise<Outcomes<JsonObject>>;
  /**
   * Windowed checks on streamed output. transformed = the chunks to emit in place of this one ([] holds it back,
   * e.g. until a window is checked); at end of stream (chunk null) transformed flushes what was held.
   */
  onStreamChunk?(args: HookArgs & { event: StreamEvent }): Promise<Outcomes<JsonObject[]>>;
  /** Take over decoding (at most one plugin per route). */
  decode?(args: DecodeArgs): Promise<DecodeResult>;
  /** True when onRequest/onResponse may rewrite their input: such hooks run in order, the others in parallel. */
  mutates?: boolean;
  close?(): Promise<void>;
}

export interface PluginEnv {
  logger: Logger;
  /** Directory that relative paths in the plugin's config resolve against (the config file's folder). */
  baseDir: string;
  /** Local models by name (the same registry the local upstreams use); absent outside a server (offline eval). */
  models?: ModelRegistry;
  /** The route the plugin instance serves; absent outside a server. */
  route?: { model: string; upstream: Upstream; upstreamModel?: string };
  /** The server's Prometheus metrics; absent outside a server. */
  metrics?: Metrics;
}

export interface PluginDefinition<C = unknown> {
  /** Namespace of every check id this plugin reports. */
  id: string;
  description: string;
  configSchema: z.ZodType<C>;
  defaultFailMode: FailMode;
  create(config: C, env: PluginEnv): PluginHooks | Promise<PluginHooks>;
}
