import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Result } from 'autocannon';
import { defaultThreads } from '../../src/slm/registry.js';

/** Parses a CLI flag that must be a positive integer. */
export function positive(v: string | undefined, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer`);
  return n;
}

/**
 * Flags (of a parseArgs options table) set off their defaults, except those in `ignore` (flags that do not change
 * what is measured): a run with any of them is not a bench's published configuration, so it writes no report.
 */
export function flagsOffDefault<K extends string>(
  options: Record<K, { readonly type: string; readonly default?: unknown }>,
  values: Partial<Record<K, unknown>>,
  ignore: readonly string[],
): K[] {
  return (Object.keys(options) as K[]).filter((k) => !ignore.includes(k) && values[k] !== options[k].default);
}

/** The median of the finite values (NaN when there are none). */
export const median = (xs: number[]): number => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
};

export const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/**
 * A warm-up run of each side (not kept), then `rounds` rounds of both, in alternating order (`a` first in even
 * rounds), so that drift in the machine's load falls on both alike.
 */
export async function alternating<T>(
  rounds: number,
  a: () => Promise<T>,
  b: () => Promise<T>,
): Promise<{ a: T[]; b: T[] }> {
  await a();
  await b();
  const out: { a: T[]; b: T[] } = { a: [], b: [] };
  for (let r = 0; r < rounds; r++)
    for (const side of r % 2 ? (['b', 'a'] as const) : (['a', 'b'] as const))
      out[side].push(await (side === 'a' ? a : b)());
  return out;
}

/** Whether each round of one side of an A/B run gave the same answers as the same round of the other side. */
export const sameAnswers = (a: readonly { answers: string[] }[], b: readonly { answers: string[] }[]): boolean =>
  a.every((r, i) => r.answers.join('\u0000') === b[i]?.answers.join('\u0000'));

/** The `--threads` flag of a bench on one local model: the count the model registry would give it, unless set. */
export const threadsFlag = (v: string | undefined, modelDir: string): number =>
  v === undefined ? defaultThreads(modelDir) : positive(v, 'threads');

export const fmt = (n: number, d: number) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
export const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** User+system CPU time of a process so far, from /proc (Linux); null where unavailable. */
export function cpuMs(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based) in clock ticks.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? ticks * (1000 / CLK_TCK) : null;
  } catch {
    return null;
  }
}

/** What one load run counted: the fields every bench row shares, from autocannon or the paced client alike. */
export interface LoadCounts {
  /** Answered requests per second. */
  rps: number;
  total: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  mismatches: number;
  statusCodes: Record<string, number>;
}

/** The counts of an autocannon result. */
export function autocannonCounts(r: Result): LoadCounts {
  return {
    rps: r.requests.average,
    total: r.requests.total,
    ok2xx: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    mismatches: r.mismatches,
    statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, Number(v.count)])),
  };
}

/** Parses a comma list flag whose items must come from `allowed`. */
export function listFlag<T extends string>(v: string, allowed: readonly T[], name: string): T[] {
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = items.filter((i) => !allowed.includes(i as T));
  if (bad.length || !items.length)
    throw new Error(`--${name}: expected a comma list of ${allowed.join(', ')}; got '${v}'`);
  return items as T[];
}
