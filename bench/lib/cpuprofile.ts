import { readFileSync } from 'node:fs';
import os from 'node:os';

/** A profile's path as committed reports show it: under $TMPDIR rather than this machine's temp folder. */
export function reportPath(path: string): string {
  const tmp = os.tmpdir();
  return path.startsWith(tmp) ? `$TMPDIR${path.slice(tmp.length)}` : path;
}

/** Self and inclusive time from a V8 .cpuprofile (as written by `node --cpu-prof`), grouped by function and package. */
interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Which package (or Tandem file) a frame belongs to. */
export function owner(url: string, root: string): string {
  if (!url) return '(native/vm)';
  if (url.startsWith('node:internal/deps/undici')) return 'undici (node fetch)';
  if (url.startsWith('node:internal/webstreams')) return 'node:webstreams';
  if (url.startsWith('node:internal/streams') || url === 'node:stream') return 'node:streams';
  if (url.startsWith('node:_http') || url === 'node:http') return 'node:http';
  if (url.startsWith('node:')) return 'node:internal (other)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? '?');
  }
  const path = url.replace(/^file:\/\//, '');
  if (path.startsWith(root)) return `tandem:${path.slice(root.length).replace(/^\//, '')}`;
  return path;
}

function frameName(cf: CallFrame, root: string): string {
  const fn = cf.functionName || '(anonymous)';
  if (!cf.url) return fn;
  const o = owner(cf.url, root);
  const file = cf.url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '');
  const where = o.startsWith('tandem:') ? o.slice(7) : o === 'node:internal' ? cf.url : file;
  return `${fn}  ${where}:${cf.lineNumber + 1}`;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  topSelf: { name: string; ms: number; pct: number }[];
  byOwnerSelf: { owner: string; ms: number; pct: number }[];
  byOwnerInclusive: { owner: string; ms: number; pct: number }[];
  /** Self time charged to the nearest frame on the stack from a package or a Tandem file (not node core). */
  byOwnerAttributed: { owner: string; ms: number; pct: number }[];
}

const isCore = (o: string) => o.startsWith('node:') || o === '(native/vm)' || o === 'undici (node fetch)';

export function summariseProfile(file: string, root: string, top = 30): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  let total = 0;
  let idle = 0;
  const fnSelf = new Map<string, number>();
  const ownerSelf = new Map<string, number>();
  const ownerIncl = new Map<string, number>();
  const ownerAttr = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    if (n.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const special = ['(garbage collector)', '(program)'].includes(n.callFrame.functionName);
    const name = frameName(n.callFrame, root);
    fnSelf.set(name, (fnSelf.get(name) ?? 0) + us);
    const o = special ? n.callFrame.functionName : owner(n.callFrame.url, root);
    ownerSelf.set(o, (ownerSelf.get(o) ?? 0) + us);
    // Inclusive: every owner that appears on this sample's stack, counted once.
    const seen = new Set<string>();
    let attributed: string | undefined;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)?.callFrame;
      if (!cf?.url) continue;
      let ow = owner(cf.url, root);
      if (!attributed && !isCore(ow)) attributed = ow;
      if (ow.startsWith('tandem:')) ow = 'tandem (all files)';
      seen.add(ow);
    }
    for (const ow of seen) ownerIncl.set(ow, (ownerIncl.get(ow) ?? 0) + us);
    const a = special
      ? n.callFrame.functionName
      : (attributed ?? `(node core, no package caller: ${owner(n.callFrame.url, root)})`);
    ownerAttr.set(a, (ownerAttr.get(a) ?? 0) + us);
  }
  const busy = total - idle || 1;
  const rows = <K extends string>(m: Map<string, number>, key: K, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(
        ([k, us]) =>
          ({ [key]: k, ms: Math.round(us / 100) / 10, pct: Math.round((us / busy) * 1000) / 10 }) as Record<
            K,
            string
          > & { ms: number; pct: number },
      );
  return {
    totalMs: Math.round(total / 1000),
    idleMs: Math.round(idle / 1000),
    topSelf: rows(fnSelf, 'name', top),
    byOwnerSelf: rows(ownerSelf, 'owner', 25),
    byOwnerInclusive: rows(ownerIncl, 'owner', 25),
    byOwnerAttributed: rows(ownerAttr, 'owner', 25),
  };
}

export function formatProfile(s: ProfileSummary): string {
  const out: string[] = [];
  out.push(`profile: ${s.totalMs} ms sampled, ${s.idleMs} ms idle; percentages are of non-idle time`);
  out.push('', 'self time by package / file:');
  for (const r of s.byOwnerSelf)
    out.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${String(r.ms).padStart(8)} ms  ${r.owner}`);
  out.push(
    '',
    'self time charged to the nearest package/Tandem frame on the stack (node core and native time go to their caller):',
  );
  for (const r of s.byOwnerAttributed)
    out.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${String(r.ms).padStart(8)} ms  ${r.owner}`);
  out.push('', 'inclusive time by package (on the stack):');
  for (const r of s.byOwnerInclusive)
    out.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${String(r.ms).padStart(8)} ms  ${r.owner}`);
  out.push('', 'top functions by self time:');
  for (const r of s.topSelf) out.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${String(r.ms).padStart(8)} ms  ${r.name}`);
  return out.join('\n');
}
