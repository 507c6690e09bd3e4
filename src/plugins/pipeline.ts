import type { Metrics } from '../proxy/metrics.js';
import { linkedAbort } from '../proxy/upstream/abort.js';
import type {
  CheckOutcome,
  CheckReport,
  FailMode,
  JsonObject,
  Outcomes,
  PluginHooks,
  RequestContext,
  StreamEvent,
  Verdict,
} from './types.js';

/** A plugin as configured on one route: its hooks plus the policy for when a check errors or is too slow. */
export interface PluginInstance {
  id: string;
  failMode: FailMode;
  timeoutMs: number;
  hooks: PluginHooks;
}

type Hook = CheckReport['hook'];

export interface HookRun<T> {
  value: T;
  reports: CheckReport[];
  /** The checks that said block, if any: the request or stream must stop. */
  blocked: CheckReport[];
}

const NONE: CheckReport[] = [];
const SEVERITY: Record<Verdict, number> = { pass: 0, flag: 1, block: 2 };

class CheckTimeout extends Error {
  constructor(ms: number) {
    super(`timed out after ${ms} ms`);
  }
}

/**
 * Runs a route's plugins. Each hook call has its own deadline; a hook that throws or times out is judged by the
 * plugin's fail mode: open = pass (with the error reported), closed = block. Hooks that only read run in parallel;
 * hooks of plugins that rewrite their input run one after another in config order.
 */
export class Pipeline {
  readonly decoder: PluginInstance | undefined;
  readonly hasStreamHooks: boolean;
  private readonly requestHooks: PluginInstance[];
  private readonly responseHooks: PluginInstance[];

  constructor(
    readonly plugins: PluginInstance[],
    private readonly metrics: Metrics,
  ) {
    const decoders = plugins.filter((p) => p.hooks.decode);
    if (decoders.length > 1)
      throw new Error(`only one plugin per route may decode; found ${decoders.map((d) => d.id).join(', ')}`);
    this.decoder = decoders[0];
    this.hasStreamHooks = plugins.some((p) => p.hooks.onStreamChunk);
    this.requestHooks = plugins.filter((p) => p.hooks.onRequest);
    this.responseHooks = plugins.filter((p) => p.hooks.onResponse);
  }

  onRequest(ctx: RequestContext, body: JsonObject, signal: AbortSignal): Promise<HookRun<JsonObject>> {
    return this.runStage('request', body, signal, (p, value, s) =>
      p.hooks.onRequest?.({ ctx, body: value, signal: s }),
    );
  }

  onResponse(
    ctx: RequestContext,
    body: JsonObject,
    response: JsonObject,
    signal: AbortSignal,
  ): Promise<HookRun<JsonObject>> {
    return this.runStage('response', response, signal, (p, value, s) =>
      p.hooks.onResponse?.({ ctx, body, response: value, signal: s }),
    );
  }

  /** Stream hooks run in config order: each sees the chunks the previous one let through. */
  async onStreamChunk(ctx: RequestContext, event: StreamEvent, signal: AbortSignal): Promise<HookRun<JsonObject[]>> {
    let chunks: JsonObject[] = event.chunk ? [event.chunk] : [];
    const reports: CheckReport[] = [];
    for (const p of this.plugins) {
      if (!p.hooks.onStreamChunk) continue;
      // At end of stream every hook is called once more (chunk null) so it can flush what it held back.
      if (chunks.length === 0 && event.chunk !== null) break;
      const input = chunks;
      const results = await Promise.all(
        (event.chunk === null ? [null] : input).map((chunk) =>
          this.call(p, 'stream', signal, (s) =>
            p.hooks.onStreamChunk?.({ ctx, event: { ...event, chunk }, signal: s }),
          ),
        ),
      );
      const next: JsonObject[] = [];
      results.forEach((r, i) => {
        reports.push(...r.reports);
        const replaced = r.outcomes.find((o) => o.transformed !== undefined)?.transformed as JsonObject[] | undefined;
        if (replaced) next.push(...replaced);
        else if (event.chunk !== null && input[i]) next.push(input[i]);
      });
      chunks = next;
      if (reports.some((r) => r.verdict === 'block')) break;
    }
    return { value: chunks, reports, blocked: reports.filter((r) => r.verdict === 'block') };
  }

  private async runStage(
    hook: Hook,
    initial: JsonObject,
    signal: AbortSignal,
    invoke: (p: PluginInstance, value: JsonObject, s: AbortSignal) => Promise<Outcomes<JsonObject>> | undefined,
  ): Promise<HookRun<JsonObject>> {
    const active = hook === 'request' ? this.requestHooks : this.responseHooks;
    // Most routes have no plugins: no allocations on their hot path.
    if (active.length === 0) return { value: initial, reports: NONE, blocked: NONE };
    let value = initial;
    const reports: CheckReport[] = [];
    for (let i = 0; i < active.length; ) {
      // A group is one mutating plugin, or a run of read-only ones that can safely share the same input.
      let j = i + 1;
      if (!active[i]?.hooks.mutates) while (j < active.length && !active[j]?.hooks.mutates) j++;
      const group = active.slice(i, j);
      const current = value;
      const results = await Promise.all(group.map((p) => this.call(p, hook, signal, (s) => invoke(p, current, s))));
      for (const r of results) {
        reports.push(...r.reports);
        for (const o of r.outcomes) if (o.transformed !== undefined) value = o.transformed as JsonObject;
      }
      if (reports.some((r) => r.verdict === 'block')) break;
      i = j;
    }
    return { value, reports, blocked: reports.filter((r) => r.verdict === 'block') };
  }

  private async call<T>(
    p: PluginInstance,
    hook: Hook,
    parent: AbortSignal,
    fn: (s: AbortSignal) => Promise<Outcomes<T>> | undefined,
  ): Promise<{ outcomes: CheckOutcome<T>[]; reports: CheckReport[] }> {
    const start = performance.now();
    const link = linkedAbort(parent);
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const err = new CheckTimeout(p.timeoutMs);
          // Tell the check that lost the race to stop working.
          link.abort(err);
          reject(err);
        }, p.timeoutMs);
      });
      const out = await Promise.race([fn(link.signal) ?? Promise.resolve([]), timeout]);
      const outcomes = Array.isArray(out) ? out : [out];
      const ms = performance.now() - start;
      const reports = outcomes.map((o) => this.report(p, hook, o, ms));
      return { outcomes, reports };
    } catch (err) {
      const ms = performance.now() - start;
      const verdict: Verdict = p.failMode === 'open' ? 'pass' : 'block';
      const message = err instanceof Error ? err.message : String(err);
      const report: CheckReport = {
        id: `${p.id}.error`,
        hook,
        verdict,
        transformed: false,
        latency_ms: round(ms),
        error: `${p.id} ${hook} check failed (${message}); fail-${p.failMode}`,
      };
      this.metrics.pluginTime.observe({ check: report.id, hook, verdict }, ms / 1000);
      return { outcomes: [], reports: [report] };
    } finally {
      clearTimeout(timer);
      link.dispose();
    }
  }

  private report(p: PluginInstance, hook: Hook, o: CheckOutcome<unknown>, hookMs: number): CheckReport {
    const id = `${p.id}.${o.check}`;
    const ms = o.latencyMs ?? hookMs;
    this.metrics.pluginTime.observe({ check: id, hook, verdict: o.verdict }, ms / 1000);
    return {
      id,
      hook,
      verdict: o.verdict,
      transformed: o.transformed !== undefined,
      latency_ms: round(ms),
      ...(o.data ? { data: o.data } : {}),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.plugins.map((p) => p.hooks.close?.()));
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/** Folds the reports of many stream windows into one per check: worst verdict, summed time, latest data. */
export function mergeReports(into: Map<string, CheckReport & { calls?: number }>, reports: CheckReport[]): void {
  for (const r of reports) {
    const prev = into.get(r.id);
    if (!prev) {
      into.set(r.id, { ...r });
      continue;
    }
    if (SEVERITY[r.verdict] >= SEVERITY[prev.verdict]) {
      prev.verdict = r.verdict;
      if (r.data) prev.data = r.data;
      if (r.error) prev.error = r.error;
    }
    prev.transformed ||= r.transformed;
    prev.latency_ms = round(prev.latency_ms + r.latency_ms);
  }
}
