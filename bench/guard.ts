/**
 * `npm run bench -- guard`: the latency the guard adds per request. Three Tandem servers side by side, each its own
 * process on 127.0.0.1 in front of the same fake upstream (non-streaming JSON echo, bench/fakeUpstreamMain.ts):
 *
 * - `passthrough`: one catch-all route, no plugins;
 * - `guard`: the privacy plugin (PII redact + restore), then the guard plugin's classifier on the prompt only (the
 *   order of examples/guard.yaml: privacy first, so the classifier reads placeholders, not the values);
 * - `guard-out`: the same plus the classifier on the answer (`output: true`).
 *
 * autocannon drives each with a 200-token English prompt that holds an email address and a phone number (so privacy
 * redacts two values and restores them in the echoed answer) and an order reference unique to each request, at three
 * loads: 32 connections in a closed loop (capacity: the machine runs flat out), 32 connections at a fixed rate per
 * connection (the goal: the latency a request pays for the guard at a load the servers carry), and 1 connection (the
 * per-request cost); several rounds with the order reversed every other round; the median of each figure is
 * reported. Added latency = guarded p50 - passthrough p50 (and p99). The guard's own time per check comes from
 * Tandem's /metrics (tandem_plugin_duration_seconds, scraped before and after every run) and from
 * `tandem.checks[].latency_ms` in a sample of the responses. Writes reports/bench-guard.json and docs/bench-guard.md.
 *
 * Flags: --classifier NAME|PATH (tandem-safety-classifier), --labels a,b (labels that count; default all, `bible`
 * for the tandem-source-classifier stand-in), --threshold P, --duration S (10), --single-duration S (= duration),
 * --connections N (32), --rate R[,R...] (300,600: requests per second offered at the fixed-rate levels, the goal read
 * at the first; 0 leaves them out), --warmup S (2), --rounds N (3), --configs passthrough,guard,guard-out, --no-single,
 * --no-build, --enforce-goals (exit 1 when the goal is missed), --profile (each server under --cpu-prof; writes
 * reports/bench-guard-profile.txt instead of the report).
 */

import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { DETECTOR_BY_NAME, DETECTORS, detect } from '../src/plugins/privacy/detectors/index.js';
import { Classifier as SlmClassifier } from '../src/slm/classifier.js';
import { TextTokenizer } from '../src/slm/tokenizer.js';
import type { Child } from './lib/children.js';
import { formatProfile, reportPath, summariseProfile } from './lib/cpuprofile.js';
import {
  autocannonCounts,
  cpuMs,
  fmt,
  fmtLoad,
  type LoadCounts,
  listFlag,
  median,
  positive,
  sleep,
} from './lib/measure.js';
import { paced } from './lib/paced.js';
import { ensureBuild, ROOT, startFakeUpstream, startTandem } from './lib/tandemChild.js';
import { textTable } from './lib/textTable.js';

const TMP = join(os.tmpdir(), 'tandem-bench');
const SAFETY = 'tandem-safety-classifier';
/** Same size class and runtime as the safety classifier; its `bible` label plays "unsafe" (as in test/guard.test.ts). */
const STAND_IN = 'tandem-source-classifier';
const GOAL_ADDED_P50_MS = 3;

type ConfigId = 'passthrough' | 'guard' | 'guard-out';
const CONFIGS: ConfigId[] = ['passthrough', 'guard', 'guard-out'];
const LABEL: Record<ConfigId, string> = {
  passthrough: 'passthrough (no plugins)',
  guard: 'privacy + guard classifier on input',
  'guard-out': 'privacy + guard classifier on input and output',
};

/**
 * A realistic user message: 200 tokens with the classifier family's byte-level BPE (the count is recomputed with the
 * classifier's own tokenizer on every run and reported), one email address and one phone number in it.
 */
const EMAIL = 'margaret.collins@example.com';
const PHONE = '+44 20 7946 0958';
/**
 * Every request's prompt is different: an order reference unique to the request, so no cache of any kind (response
 * cache, the tokenizer's chunk memo) serves a whole prompt twice. The rest is the same text each time, as the words
 * of real traffic largely are.
 */
const promptFor = (n: number) =>
  'Hi, I need help writing a polite follow-up email to a customer whose order arrived damaged last week. Margaret ' +
  'bought a set of ceramic dinner plates from our online shop in March, and two of them were cracked when she ' +
  `opened the parcel (order reference ${100_000_000 + n}). We have approved a full replacement, but the warehouse ` +
  'needs five more working days before the new set can ship. Please explain the delay honestly, apologise without ' +
  'sounding defensive, and offer her a ten percent discount on her next order. She asked to be contacted at ' +
  `${EMAIL}, or by phone on ${PHONE} if anything is unclear. Keep the tone warm but professional, and keep it short.`;
const PROMPT = promptFor(0);
/** The fake upstream echoes the last user message; privacy must have put both values back. */
const expectedJson = (n: number) => JSON.stringify(`echo: ${promptFor(n)}`);
// No temperature: 0, so the response cache never answers (checked in verify()).
const bodyFor = (n: number) =>
  JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: promptFor(n) }], max_tokens: 256 });
/** The serial a response echoes back (each body is checked against the prompt it was sent). */
const SERIAL = /order reference (\d{9})/;
const HEADERS = { 'content-type': 'application/json', authorization: 'Bearer sk-bench-not-a-real-key' };
/** One response body in this many is parsed for its `tandem.checks` latencies. */
const SAMPLE_EVERY = 8;

interface Target {
  id: ConfigId;
  url: string;
  child: Child;
}

/** One check as seen in one run: from /metrics (deltas of the histogram) and from sampled response bodies. */
interface CheckTime {
  /** Observations in the run (from /metrics). */
  count: number;
  /** Mean time per check (histogram sum / count). */
  meanMs: number | null;
  /** p50 interpolated within the histogram's buckets (0.1, 0.5, 1, 2.5, 5 ms ...): coarse. */
  bucketP50Ms: number | null;
  /** Median of `latency_ms` over the sampled response bodies. */
  sampledP50Ms: number | null;
  sampled: number;
}

/**
 * A load level: `connections` clients in autocannon's closed loop (each sends its next request when the last one
 * is answered: the server runs flat out, so latency is mostly queueing and measures capacity), or, with `rate`,
 * requests arriving at `rate` per second over those connections (bench/lib/paced.ts: an offered load the server
 * carries, so latency is mostly service time).
 */
interface Level {
  connections: number;
  rate?: number;
}
const levelKey = (l: Level) => (l.rate ? `${l.connections}@${l.rate}` : `${l.connections}`);
const levelName = (l: Level) =>
  l.rate
    ? `${l.connections} connections, ${l.rate} req/s offered (Poisson arrivals)`
    : `${l.connections} connection${l.connections === 1 ? '' : 's'}, closed loop`;

interface Row extends LoadCounts {
  config: ConfigId;
  connections: number;
  /** levelKey of the load level. */
  level: string;
  p50: number;
  p99: number;
  mean: number;
  /** Tandem's own view: mean of tandem_request_duration_seconds over the run. */
  serverMeanMs: number | null;
  cpuMsPerReq: number | null;
  cpuCores: number | null;
  checks: Record<string, CheckTime>;
  flagged: boolean;
}

interface Classifier {
  name: string;
  dir: string;
  standIn: boolean;
  labels: string[];
  counted: string[] | undefined;
  threshold: number | undefined;
  maxLength: number;
  onnxBytes: number;
  multiLabel: boolean;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      classifier: { type: 'string', default: SAFETY },
      labels: { type: 'string' },
      threshold: { type: 'string' },
      duration: { type: 'string', default: '10' },
      'single-duration': { type: 'string' },
      connections: { type: 'string', default: '32' },
      rate: { type: 'string', default: '300,600' },
      warmup: { type: 'string', default: '2' },
      rounds: { type: 'string', default: '3' },
      configs: { type: 'string', default: CONFIGS.join(',') },
      'no-single': { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'enforce-goals': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const duration = positive(values.duration, 'duration');
  const singleDuration = positive(values['single-duration'] ?? values.duration, 'single-duration');
  const connections = positive(values.connections, 'connections');
  const rounds = positive(values.rounds, 'rounds');
  const warmup = Number(values.warmup);
  if (!Number.isFinite(warmup) || warmup < 0) throw new Error('--warmup must be a number >= 0');
  const configs = listFlag(values.configs, CONFIGS, 'configs');
  const rates = values.rate.split(',').map(Number);
  if (rates.some((r) => !Number.isFinite(r) || r < 0))
    throw new Error('--rate must be numbers >= 0, comma separated (0: no fixed-rate level)');
  const levels: Level[] = [
    { connections },
    ...rates.filter((r) => r > 0).map((r) => ({ connections, rate: r })),
    ...(values['no-single'] || connections === 1 ? [] : [{ connections: 1 }]),
  ];
  const threshold = values.threshold === undefined ? undefined : Number(values.threshold);
  if (threshold !== undefined && !(threshold >= 0 && threshold <= 1)) throw new Error('--threshold must be 0..1');

  // The model as the guard plugin loads it: its labels, length and windows are what the servers will use.
  const dir = classifierDir(values.classifier);
  const model = await SlmClassifier.load(dir);
  const cls = classifierInfo(model, values.classifier, values.labels, threshold);
  const prompt = promptFacts(model);
  await model.release();

  const perRun = (l: Level) => warmup + (l.connections === 1 ? singleDuration : duration) + 5;
  const budgetMs = 120_000 + rounds * configs.length * levels.reduce((a, c) => a + perRun(c), 0) * 1000;
  const watchdog = setTimeout(() => {
    console.error(`bench guard: exceeded its ${Math.round(budgetMs / 1000)} s budget, killing children`);
    process.exit(1);
  }, budgetMs);
  watchdog.unref();

  const children: Child[] = [];
  const files: string[] = [];
  const profDirs = new Map<string, { dir: string; child: Child }>();
  try {
    if (!values['no-build']) ensureBuild();
    mkdirSync(TMP, { recursive: true });

    const { url: fakeUrl, child: fake } = await startFakeUpstream();
    children.push(fake);

    const targets = await Promise.all(
      configs.map(async (id): Promise<Target> => {
        const file = join(TMP, `guard-${id}-${process.pid}.json`);
        writeFileSync(file, JSON.stringify(tandemConfig(id, fakeUrl, cls), null, 2));
        files.push(file);
        const profDir = values.profile ? join(TMP, `prof-${id}-${Date.now()}`) : undefined;
        const t = await startTandem({ config: file, name: `tandem-${id}`, profDir });
        if (profDir) profDirs.set(id, { dir: profDir, child: t.child });
        children.push(t.child);
        return { id, url: t.url, child: t.child };
      }),
    );

    console.log(`fake upstream ${fakeUrl} (own process)`);
    console.log(
      `classifier ${cls.name}${cls.standIn ? ` (STAND-IN for ${SAFETY}, which is not in models/ yet)` : ''}: ${cls.dir}, ${cls.labels.length} labels (${cls.labels.join(', ')}), counted: ${cls.counted?.join(', ') ?? 'all'}, max ${cls.maxLength} tokens, ${(cls.onnxBytes / 1e6).toFixed(2)} MB ONNX`,
    );
    console.log(
      `prompt: ${prompt.chars} characters, ${prompt.tokens} tokens (${cls.name} tokenizer), PII found: ${prompt.pii.join(', ')}; after redaction ${prompt.redactedTokens} tokens, which the guard reads as ${prompt.pieces.length} window(s) of <= ${cls.maxLength} tokens (${prompt.pieces.map((p) => `${p.tokens} tokens`).join(', ')})`,
    );
    let promptScores: Record<string, number> | undefined;
    for (const t of targets) {
      console.log(`${t.id.padEnd(12)} ${t.url}  ${LABEL[t.id]}`);
      const v = await verify(t);
      promptScores ??= v.scores;
      console.log(`  verified: ${v.summary}`);
    }

    const loadBefore = os.loadavg();
    console.log(
      `\nload: ${levels.map((l) => `${levelName(l)} x ${l.connections === 1 ? singleDuration : duration} s`).join('; ')} per run after a ${warmup} s warm-up, ${rounds} round(s); ${os.cpus().length} CPUs, loadavg ${fmtLoad(loadBefore)}`,
    );
    const runs: (Row & { round: number })[] = [];
    for (let round = 0; round < rounds; round++) {
      if (rounds > 1) console.log(`round ${round + 1} of ${rounds}`);
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const c of levels) {
        for (const t of order) {
          const seconds = c.connections === 1 ? singleDuration : duration;
          if (warmup > 0) await load(t, c, warmup);
          const m0 = await scrape(t);
          const cpu0 = cpuMs(t.child.proc.pid);
          const t0 = performance.now();
          const res = await load(t, c, seconds, true);
          const cpu1 = cpuMs(t.child.proc.pid);
          const wallMs = performance.now() - t0;
          const m1 = await scrape(t);
          const r = toRow(t.id, c, res, m0, m1);
          if (cpu0 !== null && cpu1 !== null) {
            r.cpuMsPerReq = r.ok2xx ? (cpu1 - cpu0) / r.ok2xx : null;
            r.cpuCores = (cpu1 - cpu0) / wallMs;
          }
          runs.push({ ...r, round: round + 1 });
          const own = Object.entries(r.checks)
            .filter(([k]) => k.startsWith('guard.'))
            .map(([k, v]) => `${k} ${fmt(v.sampledP50Ms ?? Number.NaN, 2)} ms`)
            .join(', ');
          console.log(
            `  ${t.id.padEnd(11)} c=${levelKey(c).padEnd(5)} ${fmt(r.rps, 0).padStart(6)} req/s  p50 ${fmt(r.p50, 2)} ms  p99 ${fmt(r.p99, 2)} ms  CPU ${fmt(r.cpuMsPerReq ?? Number.NaN, 3)} ms/req${own ? `  (${own})` : ''}${r.flagged ? `  FLAGGED ${problems(r)}` : ''}`,
          );
          await sleep(500);
        }
      }
    }
    const rows = medianRows(runs);
    const loadAfter = os.loadavg();
    const report = buildReport(rows, runs, {
      cls,
      prompt,
      duration,
      singleDuration,
      connections,
      levels,
      warmup,
      rounds,
      loadBefore,
      loadAfter,
      promptScores,
    });
    for (const c of levels) console.log(`\n${levelName(c)}\n${table(rows.filter((r) => r.level === levelKey(c)))}`);
    console.log(`\n${report.summaryLines.join('\n')}`);

    if (values.profile) {
      // Each server's own CPU profile under the same load: where the guard's added time goes.
      const parts: string[] = [];
      for (const [id, { dir, child }] of profDirs) {
        await child.stop('SIGINT', 15_000);
        const prof = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
        if (!prof) throw new Error(`no .cpuprofile written in ${dir}`);
        parts.push(
          `## ${id}\nprofile file: ${reportPath(join(dir, prof))}\n\n${formatProfile(summariseProfile(join(dir, prof), ROOT))}`,
        );
      }
      const out = join(ROOT, 'reports', 'bench-guard-profile.txt');
      writeFileSync(
        out,
        `Tandem CPU profiles under autocannon load, ${new Date().toISOString()}\n\n${parts.join('\n\n')}\n`,
      );
      console.log(`\nwrote ${out} (profile mode writes no bench report)`);
      return 0;
    }
    const complete =
      CONFIGS.every((c) => configs.includes(c)) && levels.some((l) => l.connections === 1) && (rates[0] ?? 0) > 0;
    if (complete) writeReports(report.json, rows, report);
    else console.log('\n(partial run: --configs/--no-single narrowed, reports/bench-guard.json not written)');

    const flagged = runs.filter((r) => r.flagged);
    if (flagged.length) {
      console.error(
        `\nbench guard: ${flagged.length} run(s) had errors/non-2xx/bad bodies; their numbers are suspect.`,
      );
      return 1;
    }
    if (values['enforce-goals'] && report.goalMet === false) return 1;
    return 0;
  } finally {
    clearTimeout(watchdog);
    await Promise.all(children.map((c) => c.stop('SIGTERM', 5000)));
    for (const f of files) rmSync(f, { force: true });
  }
}

/** The classifier's folder, refused with a hint when it is not there. */
function classifierDir(name: string): string {
  const dir = name.startsWith('.') || isAbsolute(name) ? resolve(name) : join(ROOT, 'models', name);
  if (!existsSync(join(dir, 'config.json'))) {
    throw new Error(
      `classifier '${name}': no model folder at ${dir}${name === SAFETY ? ` (${SAFETY} may not be trained yet; pass --classifier ${STAND_IN} to bench with the stand-in)` : ''}`,
    );
  }
  return dir;
}

/** What the guard will make of the classifier (labels that count, threshold, max length). */
function classifierInfo(
  model: SlmClassifier,
  name: string,
  labelsFlag: string | undefined,
  threshold: number | undefined,
): Classifier {
  const dir = model.folder.dir;
  const labels = model.labels;
  const standIn = name === STAND_IN || dir === join(ROOT, 'models', STAND_IN);
  const counted = labelsFlag
    ? labelsFlag
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : standIn
      ? ['bible']
      : undefined;
  const unknown = counted?.filter((l) => !labels.includes(l)) ?? [];
  if (unknown.length) throw new Error(`--labels: ${unknown.join(', ')} not among the model's ${labels.join(', ')}`);
  const own = (model.folder.config as { tandem_threshold?: unknown }).tandem_threshold;
  return {
    name,
    dir,
    standIn,
    labels,
    counted,
    threshold: threshold ?? (typeof own === 'number' ? own : undefined),
    maxLength: model.maxLength,
    onnxBytes: fileSize(model.folder.onnxPath),
    multiLabel: model.multiLabel,
  };
}

function fileSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return Number.NaN;
  }
}

interface PromptFacts {
  chars: number;
  tokens: number;
  pii: string[];
  /** What the classifier reads: the prompt after privacy replaced the values by placeholders. */
  redacted: string;
  redactedTokens: number;
  pieces: { tokens: number }[];
}

/** Token count with the classifier's tokenizer, the PII privacy will find, and the windows the guard will classify. */
function promptFacts(model: SlmClassifier): PromptFacts {
  const tok = new TextTokenizer(model.folder);
  const count = (t: string) => tok.encode(t, true).length;
  const found = detect(PROMPT, new Set(DETECTORS));
  const pii = found.map((f) => `${f.detector} '${PROMPT.slice(f.start, f.end)}'`);
  if (!found.some((f) => f.detector === 'email') || !found.some((f) => f.detector === 'phone'))
    throw new Error(`the bench prompt should hold an email and a phone number for privacy; found ${pii.join(', ')}`);
  // Privacy runs first: each value becomes [LABEL_1] (one value of each kind in the prompt).
  let redacted = '';
  let pos = 0;
  for (const f of found) {
    redacted += `${PROMPT.slice(pos, f.start)}[${DETECTOR_BY_NAME.get(f.detector)?.label ?? f.detector.toUpperCase()}_1]`;
    pos = f.end;
  }
  redacted += PROMPT.slice(pos);
  // The guard's own cut (src/plugins/guard/classifier.ts reads Classifier.windows at the default piece size).
  const pieces = model.windows(redacted).map((w) => ({ tokens: w.length }));
  return { chars: PROMPT.length, tokens: count(PROMPT), pii, redacted, redactedTokens: count(redacted), pieces };
}

function tandemConfig(id: ConfigId, fakeUrl: string, cls: Classifier) {
  const guard = (output: boolean) => ({
    use: 'guard',
    config: {
      classifier: {
        model: cls.dir,
        action: 'block',
        ...(cls.counted && { labels: cls.counted }),
        ...(cls.threshold !== undefined && { threshold: cls.threshold }),
      },
      input: true,
      output,
    },
  });
  const plugins =
    id === 'passthrough' ? [] : [{ use: 'privacy', config: {} /* defaults: redact all */ }, guard(id === 'guard-out')];
  return {
    upstreams: { fake: { url: fakeUrl, apiKeyEnv: 'TANDEM_UPSTREAM_API_KEY' } },
    routes: [{ model: '*', upstream: 'fake', plugins }],
    logging: { level: 'warn' },
  };
}

interface CheckReport {
  id: string;
  hook: string;
  verdict: string;
  transformed: boolean;
  latency_ms: number;
  data?: Record<string, unknown>;
}

/** One request before measuring: the echo comes back whole with both values restored, and every check ran. */
async function verify(t: Target): Promise<{ summary: string; scores?: Record<string, number> }> {
  const fail = (why: string, body: string) => {
    throw new Error(`${t.id} check failed: ${why}\nbody: ${body.slice(0, 1200)}`);
  };
  const r = await fetch(`${t.url}/v1/chat/completions`, {
    method: 'POST',
    headers: HEADERS,
    body: bodyFor(0),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await r.text();
  if (r.status !== 200) fail(`HTTP ${r.status}`, text);
  let parsed: { choices?: { message?: { content?: unknown } }[]; tandem?: { checks?: CheckReport[]; cache?: string } };
  try {
    parsed = JSON.parse(text);
  } catch {
    return fail('not JSON', text) as never;
  }
  const content = parsed.choices?.[0]?.message?.content;
  if (content !== `echo: ${PROMPT}`) fail(`content ${JSON.stringify(content)} is not the restored echo`, text);
  if (!text.includes(expectedJson(0))) fail('the echo is not in the body as JSON.stringify writes it', text);
  if (parsed.tandem?.cache === 'hit') fail('answered from the response cache', text);
  const checks = parsed.tandem?.checks ?? [];
  const has = (id: string, hook: string) => checks.find((c) => c.id === id && c.hook === hook);
  if (t.id !== 'passthrough') {
    const cl = has('guard.classifier', 'request');
    if (!cl) fail('no guard.classifier check on the request', text);
    if (cl?.verdict !== 'pass') fail(`guard.classifier said ${cl?.verdict} to the benign prompt`, text);
    if (!has('privacy.email', 'request')?.transformed || !has('privacy.phone', 'request')?.transformed)
      fail('privacy did not redact the email and the phone number', text);
    if (has('privacy.restore', 'response')?.data?.restored !== 2) fail('privacy did not restore 2 values', text);
    if (t.id === 'guard-out' && has('guard.classifier', 'response')?.verdict !== 'pass')
      fail('no passing guard.classifier check on the response', text);
  } else if (checks.length) fail('passthrough ran checks', text);
  const scores = has('guard.classifier', 'request')?.data?.scores as Record<string, number> | undefined;
  return {
    summary: `200, echo restored, checks: ${checks.map((c) => `${c.id}@${c.hook}=${c.verdict}`).join(' ') || 'none'}${scores ? `; classifier scores ${JSON.stringify(scores)}` : ''}`,
    scores,
  };
}

interface Loaded {
  res: LoadCounts;
  /** Response time of every 2xx response, ms, unrounded (autocannon's own histogram has 1 ms resolution). */
  times: number[];
  /** `id@hook` -> sampled latency_ms. */
  sampled: Map<string, number[]>;
}

/** autocannon emits every response with its time in fractional ms; its own percentiles are whole milliseconds. */
type Tracker = { on(e: 'response', f: (client: unknown, status: number, bytes: number, ms: number) => void): void };

let serial = 0;

/** Whether a body is the restored echo of the prompt it answers (its serial says which). */
function echoOk(b: string): boolean {
  const m = SERIAL.exec(b);
  return m !== null && b.includes(expectedJson(Number(m[1]) - 100_000_000));
}

async function load(t: Target, level: Level, seconds: number, measure = false): Promise<Loaded> {
  const sampled = new Map<string, number[]>();
  let n = 0;
  const sample = (b: string) => {
    if (!measure || t.id === 'passthrough' || n++ % SAMPLE_EVERY !== 0) return;
    try {
      for (const c of (JSON.parse(b) as { tandem?: { checks?: CheckReport[] } }).tandem?.checks ?? []) {
        const k = `${c.id}@${c.hook}`;
        sampled.set(k, [...(sampled.get(k) ?? []), c.latency_ms]);
      }
    } catch {
      // A body that is not JSON fails the echo check.
    }
  };
  if (level.rate) {
    // The same arrival schedule for every target (seeded by round-independent level), unique prompts as always.
    const r = await paced({
      origin: t.url,
      path: '/v1/chat/completions',
      headers: HEADERS,
      body: () => bodyFor(++serial),
      connections: level.connections,
      rate: level.rate,
      seconds,
      seed: 12345,
      verifyBody: echoOk,
      onBody: sample,
    });
    const res: LoadCounts = { ...r, total: r.sent, timeouts: 0 };
    return { res, times: r.times, sampled };
  }
  const times: number[] = [];
  const instance = autocannon({
    url: `${t.url}/v1/chat/completions`,
    method: 'POST',
    headers: HEADERS,
    // A new serial per request, across runs and rounds: the servers never see the same prompt twice.
    requests: [{ setupRequest: (req) => ({ ...req, body: bodyFor(++serial) }) }],
    connections: level.connections,
    duration: seconds,
    timeout: 10,
    verifyBody: (b) => {
      sample(b);
      return echoOk(b);
    },
  });
  if (measure)
    (instance as unknown as Tracker).on('response', (_c, status, _b, ms) => {
      if (status >= 200 && status < 300) times.push(ms);
    });
  const hard = setTimeout(() => instance.stop(), (seconds + 20) * 1000);
  try {
    const res = autocannonCounts(await instance);
    return { res, times, sampled };
  } finally {
    clearTimeout(hard);
  }
}

/** tandem_plugin_duration_seconds and tandem_request_duration_seconds from /metrics, summed over other labels. */
interface Scrape {
  /** key `check@hook` (or `request` for the request histogram) -> sum, count, cumulative buckets by le. */
  hist: Map<string, { sum: number; count: number; buckets: Map<number, number> }>;
}

async function scrape(t: Target): Promise<Scrape> {
  const r = await fetch(`${t.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  const hist: Scrape['hist'] = new Map();
  const re = /^(tandem_plugin_duration_seconds|tandem_request_duration_seconds)_(bucket|sum|count)\{([^}]*)\} (\S+)$/;
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    const [, metric, part, labelText, value] = m as unknown as [string, string, string, string, string];
    const labels = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const key = metric === 'tandem_request_duration_seconds' ? 'request' : `${labels.check}@${labels.hook}`;
    const h = hist.get(key) ?? { sum: 0, count: 0, buckets: new Map<number, number>() };
    const v = Number(value);
    if (part === 'sum') h.sum += v;
    else if (part === 'count') h.count += v;
    else {
      const le = labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(labels.le);
      h.buckets.set(le, (h.buckets.get(le) ?? 0) + v);
    }
    hist.set(key, h);
  }
  return { hist };
}

/** p50 of a Prometheus histogram (cumulative buckets), interpolated linearly within its bucket, in ms. */
function bucketQuantile(buckets: Map<number, number>, q: number): number | null {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Number.POSITIVE_INFINITY) ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const le of les) {
    const c = buckets.get(le) ?? 0;
    if (c >= rank) {
      if (!Number.isFinite(le)) return prevLe * 1000;
      const within = c - prevCount;
      return (prevLe + (within > 0 ? ((rank - prevCount) / within) * (le - prevLe) : 0)) * 1000;
    }
    prevLe = le;
    prevCount = c;
  }
  return null;
}

function percentile(sorted: number[], q: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

function toRow(config: ConfigId, level: Level, l: Loaded, m0: Scrape, m1: Scrape): Row {
  const r = l.res;
  const times = [...l.times].sort((a, b) => a - b);
  const checks: Record<string, CheckTime> = {};
  let serverMeanMs: number | null = null;
  for (const [key, after] of m1.hist) {
    const before = m0.hist.get(key);
    const count = after.count - (before?.count ?? 0);
    const sum = after.sum - (before?.sum ?? 0);
    if (key === 'request') {
      serverMeanMs = count > 0 ? (sum / count) * 1000 : null;
      continue;
    }
    if (count <= 0) continue;
    const buckets = new Map([...after.buckets].map(([le, c]) => [le, c - (before?.buckets.get(le) ?? 0)]));
    const s = [...(l.sampled.get(key) ?? [])].sort((a, b) => a - b);
    checks[key] = {
      count,
      meanMs: (sum / count) * 1000,
      bucketP50Ms: bucketQuantile(buckets, 0.5),
      sampledP50Ms: s.length ? percentile(s, 0.5) : null,
      sampled: s.length,
    };
  }
  const row: Row = {
    config,
    connections: level.connections,
    level: levelKey(level),
    rps: r.rps,
    p50: percentile(times, 0.5),
    p99: percentile(times, 0.99),
    mean: times.length ? times.reduce((a, b) => a + b, 0) / times.length : Number.NaN,
    total: r.total,
    ok2xx: r.ok2xx,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    mismatches: r.mismatches,
    statusCodes: r.statusCodes,
    serverMeanMs,
    cpuMsPerReq: null,
    cpuCores: null,
    checks,
    flagged: false,
  };
  row.flagged = row.non2xx + row.errors + row.timeouts + row.mismatches > 0 || row.ok2xx === 0;
  return row;
}

const problems = (r: Row) =>
  `non2xx=${r.non2xx} errors=${r.errors} timeouts=${r.timeouts} mismatches=${r.mismatches} codes=${JSON.stringify(r.statusCodes)}`;

/** One row per config and connection count: the median of each figure over the rounds, counts summed. */
function medianRows(runs: Row[]): Row[] {
  const groups = new Map<string, Row[]>();
  for (const r of runs) {
    const key = `${r.config} ${r.level}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const med = (xs: (number | null)[]) => {
    const v = xs.filter((x): x is number => x !== null && Number.isFinite(x));
    return v.length ? median(v) : null;
  };
  return [...groups.values()].map((g) => {
    const first = g[0] as Row;
    const sum = (f: (r: Row) => number) => g.reduce((a, r) => a + f(r), 0);
    const checkKeys = [...new Set(g.flatMap((r) => Object.keys(r.checks)))];
    const checks: Record<string, CheckTime> = {};
    for (const k of checkKeys) {
      const cs = g.map((r) => r.checks[k]).filter((c): c is CheckTime => c !== undefined);
      checks[k] = {
        count: cs.reduce((a, c) => a + c.count, 0),
        meanMs: med(cs.map((c) => c.meanMs)),
        bucketP50Ms: med(cs.map((c) => c.bucketP50Ms)),
        sampledP50Ms: med(cs.map((c) => c.sampledP50Ms)),
        sampled: cs.reduce((a, c) => a + c.sampled, 0),
      };
    }
    return {
      config: first.config,
      connections: first.connections,
      level: first.level,
      rps: median(g.map((r) => r.rps)),
      p50: median(g.map((r) => r.p50)),
      p99: median(g.map((r) => r.p99)),
      mean: median(g.map((r) => r.mean)),
      total: sum((r) => r.total),
      ok2xx: sum((r) => r.ok2xx),
      non2xx: sum((r) => r.non2xx),
      errors: sum((r) => r.errors),
      timeouts: sum((r) => r.timeouts),
      mismatches: sum((r) => r.mismatches),
      statusCodes: {},
      serverMeanMs: med(g.map((r) => r.serverMeanMs)),
      cpuMsPerReq: med(g.map((r) => r.cpuMsPerReq)),
      cpuCores: med(g.map((r) => r.cpuCores)),
      checks,
      flagged: g.some((r) => r.flagged),
    };
  });
}

/** Time in the guard's own checks per request (request hook, plus response hook where it runs), from sampled bodies. */
function guardCheckMs(r: Row | undefined, which: 'sampledP50Ms' | 'meanMs'): number | null {
  if (!r) return null;
  const v = Object.entries(r.checks)
    .filter(([k]) => k.startsWith('guard.'))
    .map(([, c]) => c[which]);
  return v.length && v.every((x) => x !== null) ? (v as number[]).reduce((a, b) => a + b, 0) : null;
}

function table(rows: Row[]): string {
  const head = [
    'config',
    'req/s',
    'p50 ms',
    'p99 ms',
    'server mean ms',
    'CPU ms/req',
    'cores',
    'guard checks ms',
    'requests',
    'errors/non-2xx',
  ];
  const body = rows.map((r) => [
    r.config,
    fmt(r.rps, 0),
    fmt(r.p50, 2),
    fmt(r.p99, 2),
    fmt(r.serverMeanMs ?? Number.NaN, 2),
    fmt(r.cpuMsPerReq ?? Number.NaN, 3),
    fmt(r.cpuCores ?? Number.NaN, 2),
    r.config === 'passthrough' ? '-' : fmt(guardCheckMs(r, 'sampledP50Ms') ?? Number.NaN, 2),
    String(r.total),
    `${r.errors + r.timeouts}/${r.non2xx}${r.mismatches ? ` (+${r.mismatches} bad bodies)` : ''}${r.flagged ? ' FLAGGED' : ''}`,
  ]);
  return textTable(head, body, (i) => i >= 1 && i <= 8);
}

interface Info {
  cls: Classifier;
  prompt: PromptFacts;
  duration: number;
  singleDuration: number;
  connections: number;
  levels: Level[];
  warmup: number;
  rounds: number;
  loadBefore: number[];
  loadAfter: number[];
  promptScores: Record<string, number> | undefined;
}

const round = (n: number | null | undefined, d = 2) =>
  n === null || n === undefined || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d;

interface Added {
  config: ConfigId;
  level: Level;
  p50: number;
  p99: number;
  /** guarded - passthrough within each round (same round, adjacent runs), then their median. */
  pairedP50: number[];
  cpuMsPerReq: number | null;
  serverMeanMs: number | null;
}

function buildReport(rows: Row[], runs: (Row & { round: number })[], info: Info) {
  const get = (c: ConfigId, l: Level) => rows.find((r) => r.config === c && r.level === levelKey(l));
  const added: Added[] = [];
  for (const n of info.levels) {
    const base = get('passthrough', n);
    if (!base) continue;
    for (const c of ['guard', 'guard-out'] as const) {
      const g = get(c, n);
      if (!g) continue;
      const paired: number[] = [];
      for (let k = 1; k <= info.rounds; k++) {
        const a = runs.find((r) => r.round === k && r.config === c && r.level === levelKey(n));
        const b = runs.find((r) => r.round === k && r.config === 'passthrough' && r.level === levelKey(n));
        if (a && b) paired.push(a.p50 - b.p50);
      }
      added.push({
        config: c,
        level: n,
        p50: g.p50 - base.p50,
        p99: g.p99 - base.p99,
        pairedP50: paired,
        cpuMsPerReq: g.cpuMsPerReq !== null && base.cpuMsPerReq !== null ? g.cpuMsPerReq - base.cpuMsPerReq : null,
        serverMeanMs: g.serverMeanMs !== null && base.serverMeanMs !== null ? g.serverMeanMs - base.serverMeanMs : null,
      });
    }
  }
  const find = (c: ConfigId, l: Level | undefined) =>
    l ? added.find((a) => a.config === c && levelKey(a.level) === levelKey(l)) : undefined;
  // The goal is latency at 32 connections under a load the server carries: the fixed-rate level. The closed loop
  // (saturation) is reported beside it as the guard's cost in capacity.
  const goalLevel = info.levels.find((l) => l.connections === info.connections && l.rate);
  const closed = info.levels.find((l) => l.connections === info.connections && !l.rate) as Level;
  const headline = find('guard', goalLevel);
  const saturated = find('guard', closed);
  const single = find('guard', { connections: 1 });
  const goalMet = headline ? headline.p50 <= GOAL_ADDED_P50_MS : undefined;

  const lines: string[] = [];
  const verdict = (x: number) => (x <= GOAL_ADDED_P50_MS ? 'met' : 'NOT met');
  for (const a of added) {
    lines.push(
      `${a.config} at ${levelName(a.level)}: added p50 ${sign(a.p50)} ms (per round ${a.pairedP50.map((x) => sign(x)).join(', ')}), added p99 ${sign(a.p99)} ms, added server CPU ${sign(a.cpuMsPerReq ?? Number.NaN, 3)} ms/req, added Tandem-side mean ${sign(a.serverMeanMs ?? Number.NaN)} ms${a.config === 'guard' && a === headline ? ` — goal p50 <= ${GOAL_ADDED_P50_MS} ms: ${verdict(a.p50)}` : ''}`,
    );
  }
  for (const n of info.levels) {
    const g = get('guard', n);
    if (!g) continue;
    const parts = Object.entries(g.checks)
      .filter(([k]) => k !== 'privacy.scan@request')
      .map(
        ([k, c]) =>
          `${k} p50 ${fmt(c.sampledP50Ms ?? Number.NaN, 2)} ms (mean ${fmt(c.meanMs ?? Number.NaN, 2)} ms from /metrics)`,
      );
    lines.push(`per-check time, guard config, ${levelName(n)}: ${parts.join('; ')}`);
  }
  const base = get('passthrough', closed);
  const guarded = get('guard', closed);
  if (saturated?.cpuMsPerReq && base && guarded) {
    lines.push(
      `capacity: in the closed loop at ${info.connections} connections the guard config serves ${fmt(guarded.rps, 0)} req/s against passthrough's ${fmt(base.rps, 0)} (x${fmt(guarded.rps / base.rps, 2)}). There the machine runs flat out (autocannon, the fake upstream and Tandem share ${os.cpus().length} cores), latency ~ connections / req/s, and each ms of CPU the guard adds per request costs ~${info.connections} ms of p50 (${info.connections} x ${fmt(saturated.cpuMsPerReq, 2)} ms = ${fmt(info.connections * saturated.cpuMsPerReq, 0)} ms predicted, ${fmt(saturated.p50, 0)} ms measured): that figure is the guard's price in throughput, not its latency`,
    );
  }
  if (info.cls.standIn)
    lines.push(
      `model: ${info.cls.name} is a STAND-IN (labels ${info.cls.labels.join('/')}, '${info.cls.counted?.join(',')}' counted as unsafe): ${SAFETY} was not in models/ when this ran; a model of a similar size class on the same runtime (onnxruntime-node on Tandem's event loop), so the timing is indicative, not ${SAFETY}'s own (it may read more tokens per piece and cut the prompt differently), and its verdicts are not safety verdicts`,
    );
  const cpus = os.cpus().length;
  if ((info.loadBefore[0] ?? 0) > cpus * 0.5) {
    lines.push(
      `warning: load average ${fmtLoad(info.loadBefore)} on ${cpus} CPUs before the runs (${fmtLoad(info.loadAfter)} after): other processes compete for CPU, so latencies are inflated; the 1-connection and CPU ms/req figures are the steadier ones`,
    );
  }
  lines.push(
    `goal (added p50 <= ${GOAL_ADDED_P50_MS} ms at ${info.connections} connections, classifier + PII): ${goalMet === undefined ? 'not evaluated (partial run)' : goalMet ? 'MET' : 'NOT met'}`,
  );

  const rowJson = (r: Row) => ({
    config: r.config,
    connections: r.connections,
    rps: round(r.rps, 1),
    p50_ms: round(r.p50, 3),
    p99_ms: round(r.p99, 3),
    mean_ms: round(r.mean, 3),
    server_mean_ms: round(r.serverMeanMs, 3),
    cpu_ms_per_req: round(r.cpuMsPerReq, 3),
    cpu_cores: round(r.cpuCores, 2),
    requests: r.total,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
    mismatches: r.mismatches,
    checks: Object.fromEntries(
      Object.entries(r.checks).map(([k, c]) => [
        k,
        {
          count: c.count,
          mean_ms: round(c.meanMs, 3),
          bucket_p50_ms: round(c.bucketP50Ms, 3),
          sampled_p50_ms: round(c.sampledP50Ms, 3),
          sampled: c.sampled,
        },
      ]),
    ),
    flagged: r.flagged,
  });
  const json: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    cpus,
    cpu_model: os.cpus()[0]?.model,
    loadavg_before: info.loadBefore.map((x) => round(x)),
    loadavg_after: info.loadAfter.map((x) => round(x)),
    classifier: {
      model: info.cls.name,
      stand_in: info.cls.standIn,
      stand_in_for: info.cls.standIn ? SAFETY : null,
      labels: info.cls.labels,
      labels_counted: info.cls.counted ?? 'all',
      threshold: info.cls.threshold ?? 'model default (tandem_threshold, else 0.5)',
      action: 'block',
      max_length_tokens: info.cls.maxLength,
      onnx_mb: round(info.cls.onnxBytes / 1e6),
      multi_label: info.cls.multiLabel,
    },
    prompt: {
      text: PROMPT,
      chars: info.prompt.chars,
      tokens: info.prompt.tokens,
      tokenizer: `${info.cls.name}/tokenizer.json`,
      pii: info.prompt.pii,
      redacted_tokens: info.prompt.redactedTokens,
      guard_pieces: info.prompt.pieces,
      classifier_scores: info.promptScores ?? null,
    },
    configs: LABEL,
    plugin_order:
      'privacy then guard, as in examples/guard.yaml: on the prompt privacy redacts first and the classifier reads the redacted text; on the answer privacy restores first and the output classifier reads the restored text',
    connections: info.connections,
    levels: info.levels.map((l) => ({
      key: levelKey(l),
      connections: l.connections,
      rate_per_connection: l.rate ?? null,
    })),
    duration_s: info.duration,
    single_duration_s: info.singleDuration,
    warmup_s: info.warmup,
    rounds: info.rounds,
    tandem_log_level: 'warn',
    latency_source:
      'per-response times from autocannon response events (fractional ms); autocannon’s own percentiles are whole ms',
    goal: `added p50 (guard - passthrough) <= ${GOAL_ADDED_P50_MS} ms at ${goalLevel ? levelName(goalLevel) : `${info.connections} connections`}`,
    goal_level: goalLevel ? levelKey(goalLevel) : null,
    goal_met: goalMet ?? null,
    added_ms: added.map((a) => ({
      config: a.config,
      level: levelKey(a.level),
      connections: a.level.connections,
      rate_per_connection: a.level.rate ?? null,
      p50: round(a.p50, 3),
      p99: round(a.p99, 3),
      p50_per_round: a.pairedP50.map((x) => round(x, 3)),
      cpu_ms_per_req: round(a.cpuMsPerReq, 3),
      server_mean: round(a.serverMeanMs, 3),
    })),
    single_connection_added_p50_ms: round(single?.p50, 3),
    saturated_added_p50_ms: round(saturated?.p50, 3),
    saturated_rps_ratio: round((guarded?.rps ?? Number.NaN) / (base?.rps ?? Number.NaN), 3),
    rows: rows.map(rowJson),
    runs: runs.map((r) => ({ round: r.round, ...rowJson(r) })),
    summary: lines,
    note: 'Load generator (autocannon), fake upstream and the three Tandem servers share the same CPUs. Tandem logs at warn; the body is not cacheable (no temperature 0), so every request goes upstream.',
  };
  return { json, summaryLines: lines, goalMet, added, goalLevel, levels: info.levels };
}

const sign = (x: number, d = 2) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(d)}` : 'n/a');

function mdTable(rows: Row[]): string {
  const out = [
    '| config | req/s | p50 ms | p99 ms | Tandem-side mean ms | Tandem CPU ms/req | Tandem cores | guard checks p50 ms | requests | errors / non-2xx |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows)
    out.push(
      `| ${r.config} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.serverMeanMs ?? Number.NaN, 2)} | ${fmt(r.cpuMsPerReq ?? Number.NaN, 3)} | ${fmt(r.cpuCores ?? Number.NaN, 2)} | ${r.config === 'passthrough' ? '-' : fmt(guardCheckMs(r, 'sampledP50Ms') ?? Number.NaN, 2)} | ${r.total} | ${r.errors + r.timeouts} / ${r.non2xx}${r.flagged ? ' **FLAGGED**' : ''} |`,
    );
  return out.join('\n');
}

function writeReports(json: Record<string, unknown>, rows: Row[], report: ReturnType<typeof buildReport>) {
  const jsonPath = join(ROOT, 'reports', 'bench-guard.json');
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  const cls = json.classifier as { model: string; stand_in: boolean; max_length_tokens: number; onnx_mb: number };
  const p = json.prompt as {
    tokens: number;
    chars: number;
    pii: string[];
    redacted_tokens: number;
    guard_pieces: { tokens: number }[];
  };
  const levels = report.levels;
  const conns = json.connections as number;
  const isGoal = (a: Added) =>
    a.config === 'guard' && report.goalLevel && levelKey(a.level) === levelKey(report.goalLevel);
  const addedRows = report.added.map(
    (a) =>
      `| ${a.config} | ${levelName(a.level)} | ${sign(a.p50)} | ${sign(a.p99)} | ${a.pairedP50.map((x) => sign(x)).join(', ')} | ${sign(a.cpuMsPerReq ?? Number.NaN, 3)} | ${isGoal(a) ? (a.p50 <= GOAL_ADDED_P50_MS ? '**met**' : '**NOT met**') : '-'} |`,
  );
  const checkRows: string[] = [];
  for (const r of rows) {
    if (r.config === 'passthrough') continue;
    for (const [k, c] of Object.entries(r.checks))
      checkRows.push(
        `| ${r.config} | ${r.level} | \`${k}\` | ${fmt(c.sampledP50Ms ?? Number.NaN, 2)} | ${fmt(c.meanMs ?? Number.NaN, 3)} | ${fmt(c.bucketP50Ms ?? Number.NaN, 2)} | ${c.count} |`,
      );
  }
  const mdPath = join(ROOT, 'docs', 'bench-guard.md');
  mkdirSync(dirname(mdPath), { recursive: true });
  writeFileSync(
    mdPath,
    `# Guard latency benchmark (${String(json.date).slice(0, 10)})

Generated by \`npm run bench -- guard\` on ${json.date}; do not edit by hand. Raw numbers: \`reports/bench-guard.json\`.

**Goal**: the guard (safety classifier on the prompt + privacy PII redact/restore) adds at most ${GOAL_ADDED_P50_MS} ms to the p50
latency at ${conns} connections, 200-token prompt, measured at ${report.goalLevel ? levelName(report.goalLevel) : 'a fixed rate'}. **Result: ${report.goalMet === undefined ? 'not evaluated' : report.goalMet ? 'MET' : 'NOT met'}.**

Why a fixed rate: in autocannon's closed loop every connection sends its next request the moment the last is
answered, so the server (and this 2-core machine, which also runs autocannon and the fake upstream) runs flat out
and a request's latency is mostly time queued behind the other ${conns - 1}: latency ~ ${conns} / throughput. That run
measures what the guard costs in capacity, and is reported below (first table, and "capacity" in the summary). The
latency a request pays for the guard is measured with the same ${conns} connections at an offered load both servers
carry (${report.goalLevel?.rate ?? '-'} req/s in all, Poisson arrivals, each request's latency counted from its arrival),
and again at ${levels
      .filter((l) => l.rate && l !== report.goalLevel)
      .map((l) => `${l.rate}`)
      .join(', ')} req/s to show how the added latency grows with load.
Read the other way, as p50 in the closed loop, the guard adds ${sign(Number(json.saturated_added_p50_ms))} ms and the
guarded server carries x${json.saturated_rps_ratio} of passthrough's requests: by that reading the goal is **not** met.

Classifier: \`${cls.model}\`${cls.stand_in ? ` — a **stand-in**: \`${SAFETY}\` was not in models/ when this ran (a similar size class on the same runtime, so the timing is indicative, not that model's own; its verdicts are not safety verdicts)` : ''}; ${cls.onnx_mb} MB ONNX, reads at most ${cls.max_length_tokens} tokens.

Three Tandem servers side by side, each its own process on 127.0.0.1, in front of one fake upstream (its own process,
non-streaming JSON that echoes the prompt): **passthrough** (no plugins), **guard** (privacy with its defaults, then the
guard classifier on the input, as ordered in examples/guard.yaml) and **guard-out** (the same with the classifier on the answer too). A prompt of
${p.tokens} tokens (${p.chars} characters; counted with the classifier's tokenizer) (a serial unique to each request inside it, so no cache sees a prompt twice) holding ${p.pii.join(' and ')}: privacy
redacts both before the request goes upstream and restores them in the answer (every response body is checked for the
restored echo); the guard classifies the redacted prompt (${p.redacted_tokens} tokens) as ${p.guard_pieces.length} overlapping window(s) in one batch (${p.guard_pieces.map((x) => x.tokens).join(' + ')} tokens).
autocannon, ${levels.map((c) => `${levelName(c)} for ${c.connections === 1 ? json.single_duration_s : json.duration_s} s`).join('; ')} per run after a ${json.warmup_s} s warm-up, ${json.rounds} rounds (order
reversed every other round); tables give the median of each figure over the rounds. Latencies are the client's, from
every response's own time (autocannon's percentiles are whole milliseconds). "Tandem-side mean" is the mean of
\`tandem_request_duration_seconds\` over the run; "guard checks p50" is the median \`latency_ms\` of the guard's checks
in one response in ${SAMPLE_EVERY} (request hook, plus response hook for guard-out). Node ${json.node}, ${json.cpus} CPUs (${json.cpu_model}), load
average ${(json.loadavg_before as number[]).join(' ')} before and ${(json.loadavg_after as number[]).join(' ')} after.

${levels.map((c) => `## ${levelName(c)}${c.connections === 1 ? ' (the per-request cost without queueing)' : c.rate ? ' (the goal)' : ' (capacity)'}\n\n${mdTable(rows.filter((r) => r.level === levelKey(c)))}`).join('\n\n')}

## Added latency (guarded - passthrough)

| config | load | added p50 ms | added p99 ms | added p50 per round | added Tandem CPU ms/req | goal p50 <= ${GOAL_ADDED_P50_MS} ms |
|---|--:|--:|--:|---|--:|---|
${addedRows.join('\n')}

## Time per check

\`sampled p50\`: median \`tandem.checks[].latency_ms\` over the sampled responses; \`mean\`: sum / count of
\`tandem_plugin_duration_seconds\` from /metrics over the run; \`bucket p50\`: the same histogram's p50 interpolated within
its buckets (0.1, 0.5, 1, 2.5, 5 ms ...), coarse. In the closed loop at ${conns} connections a check's time includes waiting for
the event loop (other requests run on it), so the fixed-rate and 1-connection figures are closer to the checks' own cost. Privacy reports one outcome
per detector that found something (\`privacy.email\`, \`privacy.phone\`), each with its own scan time.

| config | load | check@hook | sampled p50 ms | mean ms | bucket p50 ms | checks |
|---|--:|---|--:|--:|--:|--:|
${checkRows.join('\n')}

## Summary

${report.summaryLines.map((l) => `- ${l.replace(/\s+/g, ' ')}`).join('\n')}
`,
  );
  console.log(`\nwrote ${jsonPath} and ${mdPath}`);
}
