import { Pool } from 'undici';
import { rng } from '../../src/slm/sampling.js';

export interface PacedOptions {
  /** Origin, e.g. http://127.0.0.1:8080 */
  origin: string;
  path: string;
  headers: Record<string, string>;
  /** The body of the n-th request. */
  body: (n: number) => string;
  /** Connections the requests share (a request waits for a free one, and that wait counts in its latency). */
  connections: number;
  /** Offered load, requests per second over all connections. */
  rate: number;
  seconds: number;
  /** Whether a 2xx body is the expected answer. */
  verifyBody: (body: string) => boolean;
  /** Called with every response body (2xx or not), e.g. to sample what the server reports. */
  onBody?: (body: string) => void;
  /** Seed of the arrival times, so two targets see the same schedule. */
  seed?: number;
}

export interface PacedResult {
  sent: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  mismatches: number;
  statusCodes: Record<string, number>;
  /** Latency of every 2xx response in ms, from the moment it was due (not when a connection was free). */
  times: number[];
  /** Answered requests per second over the run. */
  rps: number;
}

/**
 * An open-loop load: requests arrive as a Poisson process at `rate` per second, whatever the server does, and each
 * one's latency runs from its arrival time (wrk2's correction for coordinated omission). autocannon's own rate limit
 * cannot stand in: it sends each connection's quota for the second back to back and then idles, which is a closed
 * loop in bursts.
 */
export async function paced(o: PacedOptions): Promise<PacedResult> {
  const pool = new Pool(o.origin, { connections: o.connections, pipelining: 1 });
  const out: PacedResult = {
    sent: 0,
    ok2xx: 0,
    non2xx: 0,
    errors: 0,
    mismatches: 0,
    statusCodes: {},
    times: [],
    rps: 0,
  };
  const random = rng(o.seed ?? 1);
  // In (0, 1]: -log(u) stays finite.
  const uniform = () => 1 - random();
  const start = performance.now();
  const end = start + o.seconds * 1000;
  const inflight = new Set<Promise<void>>();
  let next = start;
  const fire = (due: number) => {
    const n = out.sent++;
    const p = (async () => {
      try {
        const r = await pool.request({ path: o.path, method: 'POST', headers: o.headers, body: o.body(n) });
        const text = await r.body.text();
        const ms = performance.now() - due;
        out.statusCodes[r.statusCode] = (out.statusCodes[r.statusCode] ?? 0) + 1;
        o.onBody?.(text);
        if (r.statusCode < 200 || r.statusCode >= 300) out.non2xx++;
        else if (!o.verifyBody(text)) out.mismatches++;
        else {
          out.ok2xx++;
          out.times.push(ms);
        }
      } catch {
        out.errors++;
      }
    })();
    inflight.add(p);
    p.finally(() => inflight.delete(p));
  };
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      // Every arrival that is due goes now; timers are coarse, so several may be.
      while (next <= now && next < end) {
        fire(next);
        next += (-Math.log(uniform()) / o.rate) * 1000;
      }
      if (next >= end) return resolve();
      setTimeout(tick, Math.max(0, next - performance.now()));
    };
    tick();
  });
  await Promise.all(inflight);
  out.rps = (out.ok2xx + out.non2xx + out.mismatches) / ((performance.now() - start) / 1000);
  await pool.close();
  return out;
}
