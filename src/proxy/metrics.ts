import client from 'prom-client';
import type { LocalModelStats } from '../slm/registry.js';
import type { UpstreamObserver } from './upstream/http.js';

/** One registry per server, so several servers in one process (tests, benches) keep separate counts. */
export class Metrics implements UpstreamObserver {
  readonly registry = new client.Registry();
  readonly requests = new client.Counter({
    name: 'tandem_requests_total',
    help: 'Requests by endpoint, route and HTTP status',
    labelNames: ['endpoint', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly latency = new client.Histogram({
    name: 'tandem_request_duration_seconds',
    help: 'Time from request to the last byte of the response',
    labelNames: ['endpoint', 'stream'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly upstreamErrors = new client.Counter({
    name: 'tandem_upstream_errors_total',
    help: 'Failed upstream attempts by upstream and kind (status, timeout, connection, bad_response)',
    labelNames: ['upstream', 'kind'] as const,
    registers: [this.registry],
  });
  readonly upstreamRetries = new client.Counter({
    name: 'tandem_upstream_retries_total',
    help: 'Upstream attempts retried',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly pluginTime = new client.Histogram({
    name: 'tandem_plugin_duration_seconds',
    help: 'Time spent in each plugin check, by check id and hook',
    labelNames: ['check', 'hook', 'verdict'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });
  readonly eftTokens = new client.Counter({
    name: 'tandem_eft_tokens_total',
    help: 'Tokens EFT routes generated, and the small model drafted and speculative sampling kept (kind)',
    labelNames: ['route', 'kind'] as const,
    registers: [this.registry],
  });
  readonly eftUpstreamCalls = new client.Counter({
    name: 'tandem_eft_upstream_calls_total',
    help: 'Calls EFT routes made to their large model',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly cache = new client.Counter({
    name: 'tandem_cache_requests_total',
    help: 'Response cache look-ups by result (hit, miss)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Local generative models, read at scrape time: the queue as gauges (a growing `waiting` is the early sign of the
   * 429s `refused` counts), and prompt and generated tokens as counters, per model.
   */
  observeLocalModels(stats: () => LocalModelStats[]): void {
    new client.Gauge({
      name: 'tandem_local_sequences',
      help: 'Sequences in a local model engine: active (in the running batch) or waiting for a place',
      labelNames: ['model', 'state'] as const,
      registers: [this.registry],
      collect() {
        for (const s of stats()) {
          this.set({ model: s.model, state: 'active' }, s.active);
          this.set({ model: s.model, state: 'waiting' }, s.waiting);
        }
      },
    });
    // Counters only go up by increments: each scrape adds what the engine's running totals gained since the last.
    const seen = new Map<string, number>();
    // Incrementing by 0 too makes every loaded model's series appear from the first scrape.
    const catchUp = (key: string, total: number, inc: (gained: number) => void) => {
      inc(Math.max(0, total - (seen.get(key) ?? 0)));
      seen.set(key, total);
    };
    new client.Counter({
      name: 'tandem_local_tokens_total',
      help: 'Tokens a local model engine prefilled (prompt), took from its prefix cache (cached) and generated',
      labelNames: ['model', 'kind'] as const,
      registers: [this.registry],
      collect() {
        for (const { model, promptTokens, cachedPromptTokens, generatedTokens } of stats()) {
          catchUp(`${model}\0prompt`, promptTokens, (n) => this.inc({ model, kind: 'prompt' }, n));
          catchUp(`${model}\0cached`, cachedPromptTokens, (n) => this.inc({ model, kind: 'cached' }, n));
          catchUp(`${model}\0generated`, generatedTokens, (n) => this.inc({ model, kind: 'generated' }, n));
        }
      },
    });
    new client.Counter({
      name: 'tandem_local_refused_total',
      help: 'Sequences a local model engine refused because its queue was full (429 model_busy)',
      labelNames: ['model'] as const,
      registers: [this.registry],
      collect() {
        for (const { model, refused } of stats()) catchUp(`${model}\0refused`, refused, (n) => this.inc({ model }, n));
      },
    });
  }

  error(upstream: string, kind: string): void {
    this.upstreamErrors.inc({ upstream, kind });
  }
  retry(upstream: string): void {
    this.upstreamRetries.inc({ upstream });
  }
}
