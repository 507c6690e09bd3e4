import client from 'prom-client';
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
  readonly cache = new client.Counter({
    name: 'tandem_cache_requests_total',
    help: 'Response cache look-ups by result (hit, miss)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry });
  }

  error(upstream: string, kind: string): void {
    this.upstreamErrors.inc({ upstream, kind });
  }
  retry(upstream: string): void {
    this.upstreamRetries.inc({ upstream });
  }
}
