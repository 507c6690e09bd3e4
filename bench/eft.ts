/**
 * `npm run bench -- eft`: emulated fine-tuning (the `eft` route decoder) token by token vs speculative, with the large
 * model in process (`local`) and behind HTTP (`remote`): tokens/s and large-model calls per generated token.
 *
 * Three servers in this process, all on 127.0.0.1 and all real HTTP:
 * - R, a Tandem serving `local:tandem-large-base` as model `tandem-large-base` (the "remote large model");
 * - a node:http forwarder that holds every request for --delay-ms (20) before passing it to R (bench/lib/delayProxy.ts);
 * - E, a Tandem with routes `eft-local` (upstream local:tandem-large-base, large.kind local) and `eft-remote` (upstream
 *   the forwarder, upstreamModel tandem-large-base, large.kind completions with top-20 logprobs), both EFT with expert
 *   tandem-small-chat, base tandem-small-base, beta 1. The response cache is off on both servers.
 * Held-out chat questions (recipes/eval/chat-heldout.jsonl, evenly spaced) go through the openai SDK to E one at a
 * time, greedy and sampled, token by token (`tandem.eft.gamma: 0`) and speculative for every gamma of the sweep.
 * Writes reports/bench-eft.json and docs/bench-eft.md.
 *
 * Flags: --gamma N (the plugin's default: the headline), --sweep 2,4,6,8 (greedy runs), --questions N (16), --max-tokens N (48),
 * --delay-ms N (20), --temperature T (0.7: the sampled runs, token by token and the headline gamma; --sampled-sweep
 * runs the whole sweep sampled too), --sampled-questions N (8: evenly spaced among the questions), --seed N (1234),
 * --no-sampled, --ignore-eos (send `ignore_eos: true` with the remote route's calls, `large.extra`, so R returns
 * logprobs where the large model would end the text), --eos-probe N (0: with --ignore-eos, run N questions greedy on a
 * remote route without it as well, to compare), --outside VALUE (the remote routes' large.outside, sent only when
 * given: how EFT treats tokens outside the top-k; values as the eft schema has them), --write (write the reports even
 * for a narrowed run), --enforce-goals (exit 1 when a goal is missed).
 */

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import type { EftStats } from '../src/eft/decoder.js';
import { EftConfigSchema } from '../src/plugins/eft/schema.js';
import { builtinPlugins } from '../src/plugins/registry.js';
import type { ConfigInput } from '../src/proxy/config.js';
import { validateConfig } from '../src/proxy/loadConfig.js';
import { createServer, type TandemServer } from '../src/proxy/server.js';
import { type DelayProxy, startDelayProxy } from './lib/delayProxy.js';
import { textTable } from './lib/textTable.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const QUESTIONS_FILE = join(ROOT, 'recipes', 'eval', 'chat-heldout.jsonl');
const LARGE = 'tandem-large-base';
const EXPERT = 'tandem-small-chat';
const BASE = 'tandem-small-base';
const GOAL_CALLS_PER_TOKEN = 0.35;
const GOAL_SPEEDUP = 2.5;
const DEFAULTS = {
  // The plugin's own default: the headline is what a route gets without setting gamma.
  gamma: EftConfigSchema.parse({ experts: [{ model: 'x' }], base: 'x' }).gamma,
  sweep: '2,4,6,8',
  questions: 16,
  sampledQuestions: 8,
  maxTokens: 48,
  delayMs: 20,
  temperature: 0.7,
  eosProbe: 0,
};

type RouteId = 'local' | 'remote';
const ROUTE_MODEL: Record<RouteId | 'remote-eos', string> = {
  local: 'eft-local',
  remote: 'eft-remote',
  'remote-eos': 'eft-remote-eos',
};

interface Question {
  id: string;
  kind: string;
  messages: { role: 'user' | 'system' | 'assistant'; content: string }[];
}

/** What the eft plugin reports under `tandem.eft`. */
type EftAnnotation = EftStats & { generated_tokens: number };

interface Sample {
  route: RouteId | 'remote-eos';
  temperature: number;
  gamma: number;
  question: string;
  ok: boolean;
  error?: string;
  ms: number;
  tokens: number;
  text: string;
  finish: string | null;
  eft?: EftAnnotation;
  /** Requests the delaying forwarder saw during this one (remote routes). */
  fwdRequests: number;
  fwdTotalMs: number;
  fwdTargetMs: number;
}

interface Agg {
  route: RouteId;
  temperature: number;
  gamma: number;
  requests: number;
  errors: number;
  tokens: number;
  seconds: number;
  tps: number;
  calls: number;
  callsPerToken: number;
  tokensPerCall: number;
  drafted: number;
  accepted: number;
  acceptance: number | null;
  /** Responses whose tandem.eft.mode was not the one asked for (a speculative request that fell back to token mode). */
  modeMismatches: number;
  coveredMean: number;
  latencyP50Ms: number;
  stopFinishes: number;
  /** Remote only: requests counted by the forwarder, the target's time per call, and this server's own time. */
  fwdRequests: number | null;
  targetMsPerCall: number | null;
  addedDelayMsPerCall: number | null;
  /** Remote only: the added delay and R's time, per generated token. */
  delayMsPerToken: number | null;
  targetMsPerToken: number | null;
  ownMsPerToken: number | null;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      gamma: { type: 'string', default: String(DEFAULTS.gamma) },
      sweep: { type: 'string', default: DEFAULTS.sweep },
      questions: { type: 'string', default: String(DEFAULTS.questions) },
      'max-tokens': { type: 'string', default: String(DEFAULTS.maxTokens) },
      'delay-ms': { type: 'string', default: String(DEFAULTS.delayMs) },
      temperature: { type: 'string', default: String(DEFAULTS.temperature) },
      seed: { type: 'string', default: '1234' },
      'no-sampled': { type: 'boolean', default: false },
      'sampled-sweep': { type: 'boolean', default: false },
      'eos-probe': { type: 'string', default: String(DEFAULTS.eosProbe) },
      'sampled-questions': { type: 'string', default: String(DEFAULTS.sampledQuestions) },
      'ignore-eos': { type: 'boolean', default: false },
      outside: { type: 'string' },
      write: { type: 'boolean', default: false },
      'enforce-goals': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const gamma = intIn(values.gamma, 'gamma', 1, 16);
  const sweep = [...new Set([gamma, ...values.sweep.split(',').map((s) => intIn(s.trim(), 'sweep', 1, 16))])].sort(
    (a, b) => a - b,
  );
  const nQuestions = intIn(values.questions, 'questions', 1, 200);
  const maxTokens = intIn(values['max-tokens'], 'max-tokens', 1, 200);
  const delayMs = intIn(values['delay-ms'], 'delay-ms', 0, 10_000);
  const sampledTemp = Number(values.temperature);
  if (!Number.isFinite(sampledTemp) || sampledTemp <= 0 || sampledTemp > 2)
    throw new Error('--temperature must be a number in (0, 2]');
  const seed = intIn(values.seed, 'seed', 0, 2 ** 31 - 1);
  const temperatures = values['no-sampled'] ? [0] : [0, sampledTemp];
  const eosProbe = intIn(values['eos-probe'], 'eos-probe', 0, 200);
  const nSampled = Math.min(nQuestions, intIn(values['sampled-questions'], 'sampled-questions', 1, 200));
  /** Indices (into the questions) of those also run sampled: evenly spaced. */
  const sampledIdx = new Set(
    Array.from({ length: nSampled }, (_, i) => Math.floor(((i + 0.5) * nQuestions) / nSampled)),
  );
  const ignoreEos = values['ignore-eos'];
  /** Gammas run at a temperature: the whole sweep greedy, token by token and the headline gamma sampled. */
  const gammasAt = (t: number) => (t === 0 || values['sampled-sweep'] ? [0, ...sweep] : [0, gamma]);

  const budgetMs =
    60_000 + nQuestions * temperatures.reduce((a, t) => a + gammasAt(t).length, 0) * 2 * 8_000 + eosProbe * 10_000;
  const watchdog = setTimeout(() => {
    console.error(`bench eft: exceeded its ${Math.round(budgetMs / 1000)} s budget`);
    process.exit(1);
  }, budgetMs);
  watchdog.unref();

  const git = gitState();
  const questions = pickQuestions(nQuestions);
  const warmQuestion = pickWarmup(questions);
  const cpus = os.cpus().length;
  const loadBefore = os.loadavg();
  const started = performance.now();
  console.log(
    `bench eft: ${questions.length} held-out questions, max_tokens ${maxTokens}, temperatures ${temperatures.join(', ')}, gamma 0 (token by token) and ${sweep.join(', ')} (headline ${gamma}); remote = Tandem(${LARGE}) behind ${delayMs} ms; node ${process.version}; ${cpus} CPUs (${os.cpus()[0]?.model ?? '?'}); loadavg ${fmtLoad(loadBefore)}`,
  );
  if ((loadBefore[0] ?? 0) > cpus * 0.5)
    console.log(
      `warning: load average ${fmtLoad(loadBefore)} on ${cpus} CPUs: other processes compete for the cores; absolute tokens/s are depressed, calls per token are not affected`,
    );

  const logs: string[] = [];
  const opened: { close(): Promise<void> }[] = [];
  try {
    const remote = await startTandem(
      {
        server: { host: '127.0.0.1', port: 0 },
        upstreams: { large: { url: `local:${LARGE}` } },
        routes: [{ model: LARGE, upstream: 'large' }],
        cache: { enabled: false },
        logging: { level: 'warn' },
      },
      'R',
      logs,
    );
    opened.push(remote);
    const proxy = await startDelayProxy(remote.port, delayMs);
    opened.push(proxy);
    const eft = (large: Record<string, unknown>) => ({
      use: 'eft',
      config: { beta: 1, experts: [{ model: EXPERT }], base: BASE, gamma, large },
    });
    const remoteLarge = (withWorkaround: boolean) => ({
      kind: 'completions',
      tokenizer: LARGE,
      topLogprobs: 20,
      ...(values.outside ? { outside: values.outside } : {}),
      ...(withWorkaround ? { extra: { ignore_eos: true } } : {}),
    });
    const upstreamHttp = { url: `${proxy.url}/v1`, maxRetries: 0, timeoutMs: 30_000 };
    const server = await startTandem(
      {
        server: { host: '127.0.0.1', port: 0 },
        upstreams: { large: { url: `local:${LARGE}` }, remote: upstreamHttp },
        routes: [
          { model: ROUTE_MODEL.local, upstream: 'large', cache: false, plugins: [eft({ kind: 'local' })] },
          {
            model: ROUTE_MODEL.remote,
            upstream: 'remote',
            upstreamModel: LARGE,
            cache: false,
            plugins: [eft(remoteLarge(ignoreEos))],
          },
          {
            model: ROUTE_MODEL['remote-eos'],
            upstream: 'remote',
            upstreamModel: LARGE,
            cache: false,
            plugins: [eft(remoteLarge(false))],
          },
        ],
        cache: { enabled: false },
        logging: { level: 'warn' },
      },
      'E',
      logs,
    );
    opened.push(server);
    const client = new OpenAI({
      baseURL: `${server.url}/v1`,
      apiKey: 'sk-bench-not-a-real-key',
      maxRetries: 0,
      timeout: 60_000,
    });
    console.log(
      `R (remote large) ${remote.url}, delayed by ${delayMs} ms at ${proxy.url}; E (EFT routes) ${server.url}`,
    );

    const ask = (route: Sample['route'], q: Question, temperature: number, g: number, qSeed: number) =>
      askOne(client, proxy, route, q, temperature, g, qSeed, maxTokens);

    // Warm-up (not measured): every route and mode once, so lazy work (token maps, JIT, connections) is done.
    for (const route of ['local', 'remote'] as const)
      for (const g of [0, gamma]) {
        const s = await ask(route, warmQuestion, 0, g, seed);
        if (!s.ok) throw new Error(`warm-up ${route} gamma ${g} failed: ${s.error}`);
      }

    const samples: Sample[] = [];
    for (const temperature of temperatures) {
      console.log(`\ntemperature ${temperature}:`);
      for (const [qi, q] of questions.entries()) {
        if (temperature > 0 && !sampledIdx.has(qi)) continue;
        // Rotated order: every configuration runs early and late in a question's round alike.
        const configs = (['local', 'remote'] as const).flatMap((route) =>
          gammasAt(temperature).map((g) => ({ route, g })),
        );
        const shift = qi % configs.length;
        const order = [...configs.slice(shift), ...configs.slice(0, shift)];
        for (const { route, g } of order) samples.push(await ask(route, q, temperature, g, seed + qi));
        const last = samples.slice(-order.length);
        const errs = last.filter((s) => !s.ok).length;
        process.stdout.write(
          `  ${q.id} (${q.kind}) ${last
            .filter((s) => s.route === 'remote' && s.ok)
            .map((s) => `g${s.gamma}:${s.tokens}t/${s.eft?.upstream_calls}c`)
            .join(' ')}${errs ? `  ${errs} error(s)` : ''}\n`,
        );
      }
    }

    // Probe: the remote route without ignore_eos, where Tandem's local provider (like OpenAI) returns no token, so no
    // logprobs, at the large model's end of sequence: how the EFT decoder copes.
    const probe: Sample[] = [];
    if (eosProbe > 0) {
      console.log(
        `\nEOS probe (remote route without ignore_eos, greedy, ${Math.min(eosProbe, questions.length)} questions):`,
      );
      for (const [qi, q] of questions.slice(0, eosProbe).entries()) {
        const pair: Sample[] = [];
        for (const g of [0, gamma]) pair.push(await ask('remote-eos', q, 0, g, seed + qi));
        probe.push(...pair);
        console.log(
          `  ${q.id} ${pair.map((s) => `g${s.gamma}: ${s.ok ? `${s.tokens}t/${s.eft?.upstream_calls}c ${s.eft?.mode}` : `failed (${s.error?.slice(0, 40)})`}`).join('  ')}`,
        );
      }
      const fails = probe.filter((s) => !s.ok);
      const fellBack = probe.filter((s) => s.ok && s.gamma > 0 && s.eft?.mode !== 'speculative');
      console.log(
        `  token by token: ${fails.filter((s) => s.gamma === 0).length}/${probe.filter((s) => s.gamma === 0).length} failed; speculative: ${fails.filter((s) => s.gamma > 0).length} failed, ${fellBack.length} fell back to token by token${fails[0] ? `; first error: ${fails[0].error}` : ''}`,
      );
    }

    const loadAfter = os.loadavg();
    const seconds = (performance.now() - started) / 1000;
    const aggs = aggregate(samples);
    const report = buildReport({
      aggs,
      samples,
      probe,
      gamma,
      sweep,
      temperatures,
      questions,
      sampledQuestions: questions.filter((_, i) => sampledIdx.has(i)).map((q) => q.id),
      maxTokens,
      delayMs,
      seed,
      ignoreEos,
      git,
      remoteLarge: effectiveLarge(server.server, ROUTE_MODEL.remote),
      loadBefore,
      loadAfter,
      seconds,
      logs,
    });
    console.log(`\n${table(aggs)}\n`);
    console.log(report.lines.join('\n'));

    const narrowed =
      nQuestions !== DEFAULTS.questions ||
      nSampled !== DEFAULTS.sampledQuestions ||
      maxTokens !== DEFAULTS.maxTokens ||
      delayMs !== DEFAULTS.delayMs ||
      gamma !== DEFAULTS.gamma ||
      values['no-sampled'] ||
      values['ignore-eos'] ||
      eosProbe !== DEFAULTS.eosProbe ||
      values.outside !== undefined;
    if (!narrowed || values.write) writeReports(report.json, aggs, report.lines, report.mdNotes);
    else console.log('\n(narrowed run: reports/bench-eft.json and docs/bench-eft.md not written; --write forces it)');

    const errors = samples.filter((s) => !s.ok);
    if (errors.length) {
      console.error(`\nbench eft: ${errors.length} request(s) failed; first: ${errors[0]?.error}`);
      return 1;
    }
    if (values['enforce-goals'] && !report.goalsMet) return 1;
    return 0;
  } finally {
    clearTimeout(watchdog);
    for (const o of opened.reverse()) await o.close().catch(() => {});
  }
}

/** Evenly spaced over the file, so every kind of question (definition, verse, example, synonym, element) appears. */
function pickQuestions(n: number): Question[] {
  const all = readQuestions();
  if (n > all.length) throw new Error(`--questions ${n}: ${QUESTIONS_FILE} has ${all.length}`);
  return Array.from({ length: n }, (_, i) => all[Math.floor(((i + 0.5) * all.length) / n)] as Question);
}

function pickWarmup(chosen: Question[]): Question {
  const ids = new Set(chosen.map((q) => q.id));
  return readQuestions().find((q) => !ids.has(q.id)) as Question;
}

let questionCache: Question[] | undefined;
function readQuestions(): Question[] {
  questionCache ??= readFileSync(QUESTIONS_FILE, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Question);
  return questionCache;
}

interface Running {
  url: string;
  port: number;
  server: TandemServer;
  close(): Promise<void>;
}

/** A Tandem HTTP server in this process on 127.0.0.1 (random port); its log lines (level warn) go to `logs`. */
async function startTandem(config: ConfigInput, name: string, logs: string[]): Promise<Running> {
  const plugins = builtinPlugins();
  const loaded = { config: validateConfig(config, plugins, `bench eft ${name}`), baseDir: ROOT, source: name };
  const server = await createServer(loaded, {
    plugins,
    env: {},
    logStream: { write: (s: string) => void logs.push(`${name} ${s.trimEnd()}`) },
  });
  const { url, port } = await server.listen();
  return { url, port, server, close: () => server.close(0) };
}

async function askOne(
  client: OpenAI,
  proxy: DelayProxy,
  route: Sample['route'],
  q: Question,
  temperature: number,
  gamma: number,
  seed: number,
  maxTokens: number,
): Promise<Sample> {
  const body = {
    model: ROUTE_MODEL[route],
    messages: q.messages,
    temperature,
    seed,
    max_tokens: maxTokens,
    tandem: { eft: { gamma } },
  };
  const f0 = { ...proxy.stats };
  const t0 = performance.now();
  const base = { route, temperature, gamma, question: q.id };
  try {
    const res = (await client.chat.completions.create(body)) as OpenAI.ChatCompletion & {
      tandem?: { eft?: EftAnnotation };
    };
    const ms = performance.now() - t0;
    const f1 = proxy.stats;
    const choice = res.choices[0];
    return {
      ...base,
      ok: true,
      ms,
      tokens: res.usage?.completion_tokens ?? 0,
      text: choice?.message.content ?? '',
      finish: choice?.finish_reason ?? null,
      eft: res.tandem?.eft,
      fwdRequests: f1.requests - f0.requests,
      fwdTotalMs: f1.totalMs - f0.totalMs,
      fwdTargetMs: f1.targetMs - f0.targetMs,
    };
  } catch (err) {
    const f1 = proxy.stats;
    return {
      ...base,
      ok: false,
      error: err instanceof Error ? err.message : String(err),
      ms: performance.now() - t0,
      tokens: 0,
      text: '',
      finish: null,
      fwdRequests: f1.requests - f0.requests,
      fwdTotalMs: f1.totalMs - f0.totalMs,
      fwdTargetMs: f1.targetMs - f0.targetMs,
    };
  }
}

function aggregate(samples: Sample[]): Agg[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    if (s.route === 'remote-eos') continue;
    const key = `${s.route}|${s.temperature}|${s.gamma}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const order = (s: Sample) => [s.temperature, s.route === 'local' ? 0 : 1, s.gamma];
  const byConfig = (a: Sample[], b: Sample[]) => {
    const x = order(a[0] as Sample);
    const y = order(b[0] as Sample);
    return x.reduce((c, v, i) => c || v - (y[i] as number), 0);
  };
  return [...groups.values()].sort(byConfig).map((g) => {
    const first = g[0] as Sample;
    const ok = g.filter((s) => s.ok);
    const sum = (f: (s: Sample) => number) => ok.reduce((a, s) => a + f(s), 0);
    const tokens = sum((s) => s.tokens);
    const ms = sum((s) => s.ms);
    const calls = sum((s) => s.eft?.upstream_calls ?? 0);
    const drafted = sum((s) => s.eft?.drafted_tokens ?? 0);
    const accepted = sum((s) => s.eft?.accepted_tokens ?? 0);
    const remote = first.route === 'remote';
    const fwdRequests = sum((s) => s.fwdRequests);
    const fwdTotal = sum((s) => s.fwdTotalMs);
    const fwdTarget = sum((s) => s.fwdTargetMs);
    const want = first.gamma > 0 ? 'speculative' : 'token';
    return {
      route: first.route as RouteId,
      temperature: first.temperature,
      gamma: first.gamma,
      requests: g.length,
      errors: g.length - ok.length,
      tokens,
      seconds: ms / 1000,
      tps: tokens / (ms / 1000),
      calls,
      callsPerToken: calls / tokens,
      tokensPerCall: tokens / calls,
      drafted,
      accepted,
      acceptance: drafted ? accepted / drafted : null,
      modeMismatches: ok.filter((s) => s.eft?.mode !== want).length,
      coveredMean: ok.length ? sum((s) => s.eft?.covered_mass_mean ?? 1) / ok.length : Number.NaN,
      latencyP50Ms: median(ok.map((s) => s.ms)),
      stopFinishes: ok.filter((s) => s.finish === 'stop').length,
      fwdRequests: remote ? fwdRequests : null,
      targetMsPerCall: remote && fwdRequests ? fwdTarget / fwdRequests : null,
      addedDelayMsPerCall: remote && fwdRequests ? (fwdTotal - fwdTarget) / fwdRequests : null,
      delayMsPerToken: remote ? (fwdTotal - fwdTarget) / tokens : null,
      targetMsPerToken: remote ? fwdTarget / tokens : null,
      ownMsPerToken: remote ? (ms - fwdTotal) / tokens : ms / tokens,
    };
  });
}

interface ReportInput {
  aggs: Agg[];
  samples: Sample[];
  probe: Sample[];
  gamma: number;
  sweep: number[];
  temperatures: number[];
  questions: Question[];
  sampledQuestions: string[];
  maxTokens: number;
  delayMs: number;
  seed: number;
  ignoreEos: boolean;
  /** The code benched, as at the start of the run (modules are loaded then). */
  git: ReturnType<typeof gitState>;
  /** The remote route's `large` block after validation (the plugin's defaults filled in). */
  remoteLarge: Record<string, unknown> | null;
  loadBefore: number[];
  loadAfter: number[];
  seconds: number;
  logs: string[];
}

interface Mismatch {
  route: RouteId;
  gamma: number;
  question: string;
  at: number;
  naive: string;
  spec: string;
}

/** Greedy outputs of two configurations, question by question: how many are identical, and where the others part. */
function compareTexts(samples: Sample[], a: (s: Sample) => boolean, b: (s: Sample) => boolean) {
  const left = new Map(samples.filter((s) => s.ok && a(s)).map((s) => [s.question, s.text]));
  let same = 0;
  let compared = 0;
  const diffs: { question: string; at: number; a: string; b: string }[] = [];
  for (const s of samples.filter((x) => x.ok && b(x))) {
    const t = left.get(s.question);
    if (t === undefined) continue;
    compared++;
    if (t === s.text) same++;
    else {
      let at = 0;
      while (at < t.length && at < s.text.length && t[at] === s.text[at]) at++;
      diffs.push({ question: s.question, at, a: t, b: s.text });
    }
  }
  return { same, compared, diffs };
}

function buildReport(o: ReportInput) {
  const get = (route: RouteId, temperature: number, gamma: number) =>
    o.aggs.find((a) => a.route === route && a.temperature === temperature && a.gamma === gamma);
  const naiveR = get('remote', 0, 0);
  const specR = get('remote', 0, o.gamma);
  const naiveL = get('local', 0, 0);
  const specL = get('local', 0, o.gamma);
  const speedup = (s?: Agg, n?: Agg) => (s && n ? s.tps / n.tps : Number.NaN);
  const lines: string[] = [];

  // Greedy exactness: speculative vs token by token, per route and gamma.
  const identity: Record<string, { identical: number; compared: number }> = {};
  const mismatches: Mismatch[] = [];
  for (const route of ['local', 'remote'] as const)
    for (const g of o.sweep) {
      const c = compareTexts(
        o.samples,
        (s) => s.route === route && s.temperature === 0 && s.gamma === 0,
        (s) => s.route === route && s.temperature === 0 && s.gamma === g,
      );
      identity[`${route}_gamma${g}`] = { identical: c.same, compared: c.compared };
      for (const d of c.diffs)
        mismatches.push({ route, gamma: g, question: d.question, at: d.at, naive: d.a, spec: d.b });
    }
  const headIdentity = {
    local: identity[`local_gamma${o.gamma}`],
    remote: identity[`remote_gamma${o.gamma}`],
  };
  // Remote top-20 vs local full logits: how often the remote path gives the local path's text.
  const crossNaive = compareTexts(
    o.samples,
    (s) => s.route === 'local' && s.temperature === 0 && s.gamma === 0,
    (s) => s.route === 'remote' && s.temperature === 0 && s.gamma === 0,
  );
  const crossSpec = compareTexts(
    o.samples,
    (s) => s.route === 'local' && s.temperature === 0 && s.gamma === 0,
    (s) => s.route === 'remote' && s.temperature === 0 && s.gamma === o.gamma,
  );

  // Goals per gamma, remote path, every temperature.
  const sweepRows = o.temperatures.flatMap((t) =>
    o.sweep
      .filter((g) => get('remote', t, g) || get('local', t, g))
      .map((g) => {
        const s = get('remote', t, g);
        const n = get('remote', t, 0);
        const sl = get('local', t, g);
        const nl = get('local', t, 0);
        const up = speedup(s, n);
        return {
          temperature: t,
          gamma: g,
          calls_per_token_remote: round(s?.callsPerToken, 3),
          tokens_per_call_remote: round(s?.tokensPerCall, 2),
          tps_remote: round(s?.tps, 1),
          speedup_remote: round(up, 2),
          acceptance_remote: round(s?.acceptance ?? undefined, 3),
          calls_per_token_local: round(sl?.callsPerToken, 3),
          tps_local: round(sl?.tps, 1),
          speedup_local: round(speedup(sl, nl), 2),
          acceptance_local: round(sl?.acceptance ?? undefined, 3),
          calls_goal_met: s ? s.callsPerToken <= GOAL_CALLS_PER_TOKEN : null,
          speedup_goal_met: Number.isFinite(up) ? up >= GOAL_SPEEDUP : null,
        };
      }),
  );
  const meets = (r: (typeof sweepRows)[number]) => r.calls_goal_met === true && r.speedup_goal_met === true;
  const greedyMeeting = sweepRows.filter((r) => r.temperature === 0 && meets(r)).map((r) => r.gamma);
  const bestGreedy = [...sweepRows.filter((r) => r.temperature === 0)].sort(
    (a, b) => (b.speedup_remote ?? 0) - (a.speedup_remote ?? 0),
  )[0];

  const callsGoal = specR ? specR.callsPerToken <= GOAL_CALLS_PER_TOKEN : false;
  const tpsGoal = speedup(specR, naiveR) >= GOAL_SPEEDUP;
  const goalsMet = callsGoal && tpsGoal;

  lines.push(
    `remote, greedy, gamma ${o.gamma}: ${fmt(specR?.callsPerToken ?? Number.NaN, 3)} upstream calls per token (token by token ${fmt(naiveR?.callsPerToken ?? Number.NaN, 3)}; goal <= ${GOAL_CALLS_PER_TOKEN}: ${callsGoal ? 'met' : 'NOT met'}), ${fmt(specR?.tps ?? Number.NaN, 1)} vs ${fmt(naiveR?.tps ?? Number.NaN, 1)} tokens/s = x${fmt(speedup(specR, naiveR), 2)} (goal >= ${GOAL_SPEEDUP}: ${tpsGoal ? 'met' : 'NOT met'}), acceptance ${pct(specR?.acceptance)}`,
    `local, greedy, gamma ${o.gamma}: ${fmt(specL?.callsPerToken ?? Number.NaN, 3)} large forward passes per token (token by token ${fmt(naiveL?.callsPerToken ?? Number.NaN, 3)}), ${fmt(specL?.tps ?? Number.NaN, 1)} vs ${fmt(naiveL?.tps ?? Number.NaN, 1)} tokens/s = x${fmt(speedup(specL, naiveL), 2)}, acceptance ${pct(specL?.acceptance)}`,
  );
  for (const t of o.temperatures.filter((t) => t > 0)) {
    const s = get('remote', t, o.gamma);
    const n = get('remote', t, 0);
    lines.push(
      `remote, temperature ${t}, gamma ${o.gamma}: ${fmt(s?.callsPerToken ?? Number.NaN, 3)} calls per token, x${fmt(speedup(s, n), 2)} tokens/s over token by token, acceptance ${pct(s?.acceptance)}`,
    );
  }
  lines.push(
    `sweep (remote, greedy): ${sweepRows
      .filter((r) => r.temperature === 0)
      .map(
        (r) =>
          `gamma ${r.gamma}: ${fmt(r.calls_per_token_remote ?? Number.NaN, 3)} calls/token, x${fmt(r.speedup_remote ?? Number.NaN, 2)}, acceptance ${pct(r.acceptance_remote)}${meets(r) ? ' (both goals met)' : ''}`,
      )
      .join('; ')}`,
    greedyMeeting.length
      ? `gammas meeting both goals on the remote path (greedy): ${greedyMeeting.join(', ')}; fastest: ${bestGreedy?.gamma}`
      : `no gamma of the sweep meets both goals on the remote path (greedy); fastest: ${bestGreedy?.gamma} (x${fmt(bestGreedy?.speedup_remote ?? Number.NaN, 2)}, ${fmt(bestGreedy?.calls_per_token_remote ?? Number.NaN, 3)} calls/token)`,
    `greedy speculative = token by token (identical text): local ${o.sweep.map((g) => `g${g} ${identity[`local_gamma${g}`]?.identical}/${identity[`local_gamma${g}`]?.compared}`).join(', ')}; remote ${o.sweep.map((g) => `g${g} ${identity[`remote_gamma${g}`]?.identical}/${identity[`remote_gamma${g}`]?.compared}`).join(', ')}`,
    `remote top-20 support holds ${pct(naiveR?.coveredMean)} of the large model's probability mass on average (token by token, greedy); remote (top-20 logprobs) gives the local (full logits) greedy text: token by token ${crossNaive.same}/${crossNaive.compared}, speculative gamma ${o.gamma} ${crossSpec.same}/${crossSpec.compared}`,
  );
  if (specR && naiveR) {
    const split = (a: Agg) =>
      `${fmt(a.delayMsPerToken ?? Number.NaN, 1)} ms added delay + ${fmt(a.targetMsPerToken ?? Number.NaN, 1)} ms at R + ${fmt(a.ownMsPerToken ?? Number.NaN, 1)} ms in E`;
    lines.push(
      `where remote time goes per generated token (greedy): token by token ${split(naiveR)}; gamma ${o.gamma} ${split(specR)} (R takes ${fmt(naiveR.targetMsPerCall ?? Number.NaN, 1)} ms per call token by token, ${fmt(specR.targetMsPerCall ?? Number.NaN, 1)} ms per echo-scoring call)`,
      `ceiling: if nothing but the added ${o.delayMs} ms cost time, speedup = 1 / calls per token: x${fmt(1 / specR.callsPerToken, 2)} at gamma ${o.gamma}; at the goal's ${GOAL_CALLS_PER_TOKEN} calls per token the ceiling is x${fmt(1 / GOAL_CALLS_PER_TOKEN, 2)}, so ${GOAL_SPEEDUP}x also needs R's and E's own time per token to be small against the latency`,
    );
  }
  const modeOff = o.aggs.filter((a) => a.modeMismatches > 0);
  if (modeOff.length)
    lines.push(
      `mode: ${modeOff.map((a) => `${a.route} t${a.temperature} g${a.gamma}: ${a.modeMismatches} response(s) not in the mode asked for`).join('; ')}`,
    );
  const fwdOff = o.aggs.filter((a) => a.fwdRequests !== null && a.fwdRequests !== a.calls);
  if (fwdOff.length)
    lines.push(
      `upstream_calls vs requests seen by the forwarder differ: ${fwdOff.map((a) => `t${a.temperature} g${a.gamma} ${a.calls} vs ${a.fwdRequests}`).join('; ')}`,
    );
  let probeSummary: Record<string, unknown> | null = null;
  if (o.probe.length) {
    const naive = o.probe.filter((s) => s.gamma === 0);
    const spec = o.probe.filter((s) => s.gamma > 0);
    const firstErr = o.probe.find((s) => !s.ok)?.error ?? null;
    probeSummary = {
      questions: naive.length,
      naive_failed: naive.filter((s) => !s.ok).length,
      spec_failed: spec.filter((s) => !s.ok).length,
      spec_fell_back_to_token_mode: spec.filter((s) => s.ok && s.eft?.mode !== 'speculative').length,
      naive_calls_per_token: round(
        naive.filter((s) => s.ok).reduce((a, s) => a + (s.eft?.upstream_calls ?? 0), 0) /
          naive.filter((s) => s.ok).reduce((a, s) => a + s.tokens, 0),
        3,
      ),
      spec_calls_per_token: round(
        spec.filter((s) => s.ok).reduce((a, s) => a + (s.eft?.upstream_calls ?? 0), 0) /
          spec.filter((s) => s.ok).reduce((a, s) => a + s.tokens, 0),
        3,
      ),
      first_error: firstErr,
    };
    lines.push(
      `EOS probe (remote route without ignore_eos): token by token ${probeSummary.naive_failed}/${naive.length} requests failed, speculative ${probeSummary.spec_failed} failed and ${probeSummary.spec_fell_back_to_token_mode} fell back to token by token${firstErr ? ` (${firstErr.slice(0, 120)}...)` : ''}`,
    );
  }
  const errors = o.samples.filter((s) => !s.ok);
  if (errors.length) lines.push(`errors: ${errors.length} request(s) failed; first: ${errors[0]?.error}`);
  const cpus = os.cpus().length;
  if ((o.loadBefore[0] ?? 0) > cpus * 0.5)
    lines.push(
      `warning: load average ${fmtLoad(o.loadBefore)} before the run on ${cpus} CPUs: other processes competed for the cores; absolute tokens/s are depressed, calls per token are not affected`,
    );
  // The bench itself (two servers, onnxruntime threads) reaches a 1-minute load of about 2 to 4; well past that, others joined in.
  else if ((o.loadAfter[0] ?? 0) > Math.max(cpus * 2.5, 5))
    lines.push(
      `warning: load average ${fmtLoad(o.loadAfter)} at the end of the run on ${cpus} CPUs (the bench alone reaches about 2 to 4): other processes competed for the cores during it; absolute tokens/s are depressed, calls per token are not affected`,
    );
  lines.push(`overall: ${goalsMet ? 'goals MET' : 'goals NOT met'} (headline: remote, greedy, gamma ${o.gamma})`);

  const aggJson = (a: Agg) => ({
    route: a.route,
    temperature: a.temperature,
    gamma: a.gamma,
    requests: a.requests,
    errors: a.errors,
    generated_tokens: a.tokens,
    seconds: round(a.seconds, 3),
    tokens_per_s: round(a.tps, 2),
    upstream_calls: a.calls,
    calls_per_token: round(a.callsPerToken, 4),
    tokens_per_call: round(a.tokensPerCall, 3),
    drafted_tokens: a.drafted,
    accepted_tokens: a.accepted,
    acceptance: round(a.acceptance ?? undefined, 3),
    mode_mismatches: a.modeMismatches,
    covered_mass_mean: round(a.coveredMean, 3),
    latency_p50_ms: round(a.latencyP50Ms, 1),
    finished_by_stop: a.stopFinishes,
    forwarder_requests: a.fwdRequests,
    target_ms_per_call: round(a.targetMsPerCall ?? undefined, 2),
    added_delay_ms_per_call: round(a.addedDelayMsPerCall ?? undefined, 2),
    delay_ms_per_token: round(a.delayMsPerToken ?? undefined, 2),
    target_ms_per_token: round(a.targetMsPerToken ?? undefined, 2),
    own_ms_per_token: round(a.ownMsPerToken ?? undefined, 2),
  });

  const json: Record<string, unknown> = {
    calls_per_token_naive: round(naiveR?.callsPerToken, 4),
    calls_per_token_spec: round(specR?.callsPerToken, 4),
    tps_naive_remote: round(naiveR?.tps, 2),
    tps_spec_remote: round(specR?.tps, 2),
    speedup_remote: round(speedup(specR, naiveR), 3),
    covered_mass_remote: round(naiveR?.coveredMean, 3),
    acceptance_remote: round(specR?.acceptance ?? undefined, 3),
    calls_per_token_naive_local: round(naiveL?.callsPerToken, 4),
    calls_per_token_spec_local: round(specL?.callsPerToken, 4),
    tps_naive_local: round(naiveL?.tps, 2),
    tps_spec_local: round(specL?.tps, 2),
    speedup_local: round(speedup(specL, naiveL), 3),
    acceptance_local: round(specL?.acceptance ?? undefined, 3),
    goal_calls_per_token_max: GOAL_CALLS_PER_TOKEN,
    goal_speedup_min: GOAL_SPEEDUP,
    goal_calls_per_token_met: callsGoal,
    goal_speedup_met: tpsGoal,
    goals_met: goalsMet,
    gammas_meeting_goals_greedy: greedyMeeting,
    fastest_gamma_greedy: bestGreedy?.gamma ?? null,
    greedy_identical: headIdentity,
    greedy_identical_by_gamma: identity,
    greedy_mismatches: mismatches.slice(0, 12).map((m) => ({
      ...m,
      naive: m.naive.slice(0, Math.max(60, m.at + 30)),
      spec: m.spec.slice(0, Math.max(60, m.at + 30)),
    })),
    remote_matches_local_greedy: {
      token_by_token: { identical: crossNaive.same, compared: crossNaive.compared },
      speculative: { identical: crossSpec.same, compared: crossSpec.compared },
    },
    eos_probe: probeSummary,
    headline: { route: 'remote', temperature: 0, gamma: o.gamma },
    gamma: o.gamma,
    sweep: o.sweep,
    sweep_results: sweepRows,
    rows: o.aggs.map(aggJson),
    date: new Date().toISOString(),
    node: process.version,
    cpus,
    cpu_model: os.cpus()[0]?.model,
    loadavg_before: o.loadBefore.map((x) => round(x)),
    loadavg_after: o.loadAfter.map((x) => round(x)),
    seconds: round(o.seconds, 1),
    questions: o.questions.map((q) => q.id),
    sampled_questions: o.temperatures.some((t) => t > 0) ? o.sampledQuestions : [],
    max_tokens: o.maxTokens,
    delay_ms: o.delayMs,
    temperatures: o.temperatures,
    seed: o.seed,
    large: LARGE,
    expert: EXPERT,
    base: BASE,
    beta: 1,
    remote_top_logprobs: 20,
    remote_extra: o.ignoreEos ? { ignore_eos: true } : {},
    remote_large_config: o.remoteLarge,
    server_warnings: o.logs.length,
    ...o.git,
  };
  const mdNotes = {
    mismatches,
    identity,
    crossNaive,
    crossSpec,
    probeSummary,
  };
  return { json, lines, goalsMet, mdNotes };
}

function table(aggs: Agg[]): string {
  const head = [
    'route',
    'temp',
    'gamma',
    'tokens',
    'tok/s',
    'calls/tok',
    'tok/call',
    'accept',
    'p50 ms',
    'R ms/call',
    'own ms/tok',
    'err',
  ];
  const body = aggs.map((a) => [
    a.route,
    String(a.temperature),
    a.gamma === 0 ? '0 (token)' : String(a.gamma),
    String(a.tokens),
    fmt(a.tps, 1),
    fmt(a.callsPerToken, 3),
    fmt(a.tokensPerCall, 2),
    a.acceptance === null ? '-' : pct(a.acceptance),
    fmt(a.latencyP50Ms, 0),
    a.targetMsPerCall === null ? '-' : fmt(a.targetMsPerCall, 1),
    fmt(a.ownMsPerToken ?? Number.NaN, 2),
    String(a.errors),
  ]);
  return textTable(head, body, (i) => i >= 3);
}

function mdTable(aggs: Agg[]): string {
  const out = [
    '| route | temperature | gamma | requests | generated tokens | tokens/s | upstream calls / token | tokens / call | acceptance | p50 latency ms | R ms / call | own ms / token | errors |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const a of aggs)
    out.push(
      `| ${a.route} | ${a.temperature} | ${a.gamma === 0 ? '0 (token by token)' : a.gamma} | ${a.requests} | ${a.tokens} | ${fmt(a.tps, 1)} | ${fmt(a.callsPerToken, 3)} | ${fmt(a.tokensPerCall, 2)} | ${a.acceptance === null ? '-' : pct(a.acceptance)} | ${fmt(a.latencyP50Ms, 0)} | ${a.targetMsPerCall === null ? '-' : fmt(a.targetMsPerCall, 1)} | ${fmt(a.ownMsPerToken ?? Number.NaN, 2)} | ${a.errors} |`,
    );
  return out.join('\n');
}

function writeReports(
  json: Record<string, unknown>,
  aggs: Agg[],
  lines: string[],
  notes: ReturnType<typeof buildReport>['mdNotes'],
): void {
  const jsonPath = join(ROOT, 'reports', 'bench-eft.json');
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  const mdPath = join(ROOT, 'docs', 'bench-eft.md');
  mkdirSync(dirname(mdPath), { recursive: true });
  const date = String(json.date).slice(0, 10);
  const g = json.gamma as number;
  const sweepRows = json.sweep_results as Record<string, unknown>[];
  const sweepMd = [
    '| temperature | gamma | remote calls / token | remote tokens / call | remote tokens/s | remote speedup | remote acceptance | local calls / token | local speedup | local acceptance | calls goal | speedup goal |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|',
    ...sweepRows.map(
      (r) =>
        `| ${r.temperature} | ${r.gamma} | ${num(r.calls_per_token_remote, 3)} | ${num(r.tokens_per_call_remote, 2)} | ${num(r.tps_remote, 1)} | x${num(r.speedup_remote, 2)} | ${pct(r.acceptance_remote as number | null)} | ${num(r.calls_per_token_local, 3)} | x${num(r.speedup_local, 2)} | ${pct(r.acceptance_local as number | null)} | ${r.calls_goal_met ? 'met' : 'NOT met'} | ${r.speedup_goal_met ? 'met' : 'NOT met'} |`,
    ),
  ].join('\n');
  const mism = notes.mismatches
    .filter((m) => m.gamma === g)
    .slice(0, 4)
    .map(
      (m) =>
        `  - ${m.route} ${m.question}, parting at character ${m.at}: token by token ${JSON.stringify(m.naive.slice(0, m.at + 30))} / speculative ${JSON.stringify(m.spec.slice(0, m.at + 30))}`,
    )
    .join('\n');
  writeFileSync(
    mdPath,
    `# EFT decoding benchmark (${date})

Generated by \`npm run bench -- eft\` on ${json.date}; do not edit by hand.

Emulated fine-tuning (the \`eft\` route decoder: ${json.large} steered by ${json.expert} minus ${json.base}, beta ${json.beta}),
token by token (\`tandem: {eft: {gamma: 0}}\`) against speculative (the small models draft gamma tokens, the large
model scores them in one call), with the large model in process (\`local\`, full logits) and behind HTTP (\`remote\`: a second
Tandem serving \`local:${json.large}\` behind ${json.delay_ms} ms of added latency, asked on \`/v1/completions\` for top-${json.remote_top_logprobs}
logprobs). ${(json.questions as string[]).length} held-out chat questions, max_tokens ${json.max_tokens}, one request at a time through the openai SDK.
Node ${json.node}, ${json.cpus} CPUs (${json.cpu_model}), load average ${(json.loadavg_before as number[]).join(' ')} before and
${(json.loadavg_after as number[]).join(' ')} after the run (${json.seconds} s). Code: commit ${json.git_commit}${(json.src_uncommitted as string[]).length ? ` plus uncommitted changes under src/ (${(json.src_uncommitted as string[]).join(', ')})` : ''}.

Headline (remote, greedy, gamma ${g}): **${json.calls_per_token_spec}** upstream calls per generated token (token by token
${json.calls_per_token_naive}), **${json.tps_spec_remote}** tokens/s against **${json.tps_naive_remote}** token by token
(x${json.speedup_remote}), draft acceptance ${pct(json.acceptance_remote as number | null)}.

${mdTable(aggs)}

Gamma sweep:

${sweepMd}

${lines.map((l) => `- ${l.replace(/\s+/g, ' ')}`).join('\n')}

Goals (remote path, greedy, gamma ${g}): at most ${GOAL_CALLS_PER_TOKEN} upstream calls per generated token: **${json.goal_calls_per_token_met ? 'met' : 'NOT met'}**;
at least ${GOAL_SPEEDUP}x the tokens/s of token-by-token decoding: **${json.goal_speedup_met ? 'met' : 'NOT met'}**.

How it is measured:

- **Servers**, all in the bench process on 127.0.0.1, all real HTTP: R (Tandem, route \`${json.large}\` on \`local:${json.large}\`),
  a node:http forwarder that holds every request ${json.delay_ms} ms before passing it to R (\`bench/lib/delayProxy.ts\`), and E
  (Tandem, routes \`eft-local\` and \`eft-remote\`; the latter's upstream is the forwarder, \`large.kind: completions\`,
  \`large\` as validated: \`${JSON.stringify(json.remote_large_config)}\`). Response cache off on both, every
  route \`cache: false\`; upstream \`maxRetries: 0\`.
- **Workload**: questions evenly spaced over \`recipes/eval/chat-heldout.jsonl\` (${(json.questions as string[])[0]} ...), each sent for every
  route and gamma (order rotated per question), at temperature ${(json.temperatures as number[]).join(' and ')} (seed ${json.seed} + question
  index); the gamma sweep runs greedy on all ${(json.questions as string[]).length} questions, the sampled runs are token by token and the headline
  gamma on ${(json.sampled_questions as string[]).length} of them (evenly spaced). One warm-up request per route and mode first, not counted.
  Sampled speculative decoding keeps the distribution of token-by-token decoding, not its exact draws, so sampled
  texts are not compared.
- **tokens/s** = generated tokens (\`usage.completion_tokens\`) summed over the requests / their wall time summed (the
  client's time from sending to the parsed answer). **calls / token** = \`tandem.eft.upstream_calls\` summed / generated
  tokens (remote: HTTP calls to the large model, cross-checked against the forwarder's count; local: forward passes of
  the large model, the prompt's included). **acceptance** = accepted / drafted tokens. **R ms / call**: the forwarder's
  time from forwarding a call to the end of R's answer; **own ms / token**: E's wall time not spent waiting on the
  forwarder (drafting, the small models, combining, HTTP to the client) per token; on the local route, all of its time.
- **Greedy exactness**: at temperature 0 speculative decoding should give exactly the token-by-token text; the bench
  compares them question by question${mism ? `. Examples where they part (headline gamma):\n\n${mism}\n` : '.'}
- Speedups compare the same questions; texts (and so lengths) may differ between modes where they are not identical,
  which is why tokens/s, not request latency, is the figure compared.

Notes:

- The remote path sees only the large model's top-${json.remote_top_logprobs} tokens per position (on average ${pct(json.covered_mass_remote as number | null)} of its probability mass;
  per configuration \`rows[].covered_mass_mean\` in \`reports/bench-eft.json\`); the tokens outside it are treated as
  \`large.outside: ${(json.remote_large_config as { outside?: unknown } | null)?.outside ?? 'n/a'}\` says, so remote and local texts differ (remote matches local on ${notes.crossNaive.same}/${notes.crossNaive.compared} questions token by token, ${notes.crossSpec.same}/${notes.crossSpec.compared} speculative).
- ${json.remote_extra && Object.keys(json.remote_extra as object).length ? "`extra: {ignore_eos: true}` on the remote route: when the large model's next token is its end of sequence, Tandem's local provider (like OpenAI) stops and returns no token, so no logprobs for that position; ignore_eos makes R return them. " : 'No `ignore_eos` on the remote route: where the large model would end the text, R (like OpenAI) returns no token and so no logprobs; the calls counted include any the decoder makes to get past that. '}${notes.probeSummary ? `The EOS probe runs ${notes.probeSummary.questions} questions greedy on a remote route without it, to see how the decoder copes: token by token ${notes.probeSummary.naive_failed} request(s) failed, speculative ${notes.probeSummary.spec_failed} failed and ${notes.probeSummary.spec_fell_back_to_token_mode} fell back to token by token${notes.probeSummary.first_error ? ` (first error: ${String(notes.probeSummary.first_error).slice(0, 100)}...)` : ''}; calls per token there: ${notes.probeSummary.naive_calls_per_token} token by token, ${notes.probeSummary.spec_calls_per_token} speculative.` : ''}
- Everything shares ${json.cpus} cores: R's forward passes, E's small models and the client. The absolute figures move with the
  machine's load; calls per token do not.

Raw numbers: \`reports/bench-eft.json\` (per configuration under \`rows\`, the sweep under \`sweep_results\`).
`,
  );
  console.log(`\nwrote ${jsonPath} and ${mdPath}`);
}

/** The commit benched and any uncommitted change to the code under test (src/), so a report says what it measured. */
function gitState(): { git_commit: string | null; src_uncommitted: string[] } {
  const git = (args: string[]) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  const status = git(['status', '--porcelain', '--', 'src']);
  return {
    git_commit: head.status === 0 ? head.stdout.trim() : null,
    src_uncommitted:
      status.status === 0
        ? status.stdout
            .split('\n')
            .map((l) => l.trim())
            .filter(Boolean)
        : [],
  };
}

/** A route's eft `large` block as the server validated it (defaults filled in). */
function effectiveLarge(server: TandemServer, model: string): Record<string, unknown> | null {
  const route = server.deps.config.routes.find((r) => r.model === model);
  const cfg = route?.plugins.find((p) => p.use === 'eft')?.config as { large?: Record<string, unknown> } | undefined;
  return cfg?.large ?? null;
}

function intIn(v: string | undefined, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer in [${min}, ${max}]`);
  return n;
}
function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
const num = (v: unknown, d: number) => fmt(typeof v === 'number' ? v : Number.NaN, d);
const fmt = (n: number, d: number) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const pct = (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : `${(x * 100).toFixed(1)}%`;
const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
const round = (n: number | undefined, d = 2) =>
  n === undefined || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d;
