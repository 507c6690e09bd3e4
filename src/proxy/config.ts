import { z } from 'zod';

/**
 * The config file's schema. Every block is strict so a misspelt key is an error that names its path, not a
 * setting silently ignored. Plugin blocks are checked again against each plugin's own schema (see loadConfig).
 */

const UpstreamSchema = z.strictObject({
  /**
   * Base URL of an OpenAI-compatible API (http://127.0.0.1:8000/v1), or a model run in process:
   * `local:NAME` (a name from `models`, or a model shipped in models/) or `local:/path/to/model-folder`.
   */
  url: z.string().refine((u) => /^(https?:\/\/[^\s]+|local:.+)$/.test(u), 'must be an http(s) URL or local:MODEL'),
  /** Prefer apiKeyEnv: a key written in a config file ends up in backups and diffs. */
  apiKey: z.string().min(1).optional(),
  apiKeyEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
    .optional(),
  timeoutMs: z.number().int().positive().default(60_000),
  streamIdleTimeoutMs: z.number().int().positive().default(60_000),
  maxRetries: z.number().int().min(0).max(10).default(2),
  maxRetryAfterMs: z.number().int().min(0).default(20_000),
  /** Forward the client's own Authorization header instead of a configured key. */
  passthroughAuth: z.boolean().default(false),
  headers: z.record(z.string(), z.string()).default({}),
});

const PluginRefSchema = z.strictObject({
  /** Plugin id, e.g. `rules`. */
  use: z.string().min(1),
  failMode: z.enum(['open', 'closed']).optional(),
  timeoutMs: z.number().int().positive().default(5_000),
  config: z.unknown().optional(),
});

const RouteSchema = z.strictObject({
  /** Exact model name, or a glob with `*` (`gpt-4o*`, `*`). First match wins, exact names before globs. */
  model: z.string().min(1),
  upstream: z.string().min(1),
  /** Model name sent upstream; defaults to the name the client used (so `model` works as an alias). */
  upstreamModel: z.string().min(1).optional(),
  fallback: z.array(z.string().min(1)).default([]),
  plugins: z.array(PluginRefSchema).default([]),
  cache: z.boolean().default(true),
});

export const ModelSpecSchema = z.strictObject({
  /** A model folder in the Hugging Face Optimum ONNX layout; relative paths resolve against the config file. */
  path: z.string().min(1),
  /** Pick one graph when the folder has several (e.g. onnx/model_quantized.onnx). */
  onnxFile: z.string().min(1).optional(),
  /**
   * onnxruntime intra-op threads. Default: 1 for graphs under 8 MB (about 2M fp32 parameters), whose operators are
   * too small to split and whose spinning worker threads starve the other models' sessions (EFT runs three at once:
   * 14.6 ms per token with 2 threads each against 2.1 ms with the small ones on 1, this 2-core machine); 2 otherwise.
   */
  threads: z.number().int().min(1).max(64).optional(),
  /** Sequences decoded together in one forward pass (continuous batching). */
  maxBatch: z.number().int().min(1).max(256).default(8),
  /** Sequences allowed to wait (each choice of a request is one); beyond it requests get 429. 0 would refuse all. */
  queueLimit: z.number().int().min(1).default(64),
  /** Draft tokens per prompt-lookup check when one greedy request runs alone (0 = off); output is unchanged. */
  promptLookup: z.number().int().min(0).max(16).default(4),
  /**
   * Megabytes of finished sequences' keys and values kept per model, so a prompt that starts like one of them (a
   * chat's next turn) is prefilled only past the shared part (0 = off).
   */
  prefixCacheMB: z.number().min(0).default(64),
  /**
   * Megabytes the batch's key/value cache may reach: sequences wait rather than join a batch that would outgrow it
   * (long contexts on a large model could otherwise exhaust memory; for this family's models it never binds).
   */
  kvBudgetMB: z.number().positive().default(2048),
  /**
   * Most prompt positions one prefill pass feeds. While other requests are decoding they take a step between a long
   * prompt's passes, so its arrival holds their streams up by one chunk rather than its whole prefill; each pass
   * also returns the event loop to the server. 256 is the family's chat models' whole context, so they never split;
   * lower it for large models on CPU (a 256-position pass of a 0.5B model is about 250 GFLOP, seconds on two cores).
   */
  prefillChunkTokens: z.number().int().min(1).default(256),
});

const ProxyKeySchema = z.union([z.string().min(8), z.strictObject({ env: z.string().min(1) })]);

export const ConfigSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      bodyLimit: z
        .string()
        .regex(/^\d+(b|kb|mb)$/i, "like '4mb'")
        .default('4mb'),
      /** Leave responses exactly as upstream shaped them: no `tandem` field, no extra SSE event. */
      strictOpenAI: z.boolean().default(false),
    })
    .prefault({}),
  auth: z
    .strictObject({
      /** Keys clients must present as `Authorization: Bearer` (or `x-tandem-api-key`); none = open. */
      keys: z.array(ProxyKeySchema).default([]),
    })
    .prefault({}),
  upstreams: z
    .record(z.string().regex(/^[\w.-]+$/, 'upstream names are letters, digits, _ . -'), UpstreamSchema)
    .default({}),
  routes: z.array(RouteSchema).default([]),
  /** Local models by name, for `local:NAME` upstreams and plugins. The models shipped in models/ are always known. */
  models: z
    .record(z.string().regex(/^[\w.-]+$/, 'model names are letters, digits, _ . -'), ModelSpecSchema)
    .default({}),
  cache: z
    .strictObject({
      enabled: z.boolean().default(true),
      maxEntries: z.number().int().positive().default(1000),
      maxBytes: z
        .number()
        .int()
        .positive()
        .default(64 * 1024 * 1024),
      ttlMs: z
        .number()
        .int()
        .positive()
        .default(10 * 60_000),
    })
    .prefault({}),
  logging: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
});

export type TandemConfig = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type UpstreamConfig = z.infer<typeof UpstreamSchema>;
export type RouteConfig = z.infer<typeof RouteSchema>;
export type PluginRef = z.infer<typeof PluginRefSchema>;
export type ModelSpec = z.infer<typeof ModelSpecSchema>;
