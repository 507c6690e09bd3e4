/**
 * `npm run bench -- slm`: Tandem's local-model runtime (src/slm: CausalLM + GenerationEngine on onnxruntime-node)
 * against @huggingface/transformers on the same ONNX file, the same thread count and the same session options.
 *
 * Per model: prefill tokens/s (one forward of a 64-token prompt, batch 1), decode tokens/s at batch 1 (greedy,
 * 64 new tokens, KV cache; prefill excluded: time from the first to the last generated token), whether both runtimes
 * pick the same greedy ids, and for Tandem 8 prompts generated concurrently (one continuously batched engine) vs
 * the same 8 one after another. Plus the machine's memory bandwidth and the batch-1 decode bound it implies
 * (every weight read once per token). Writes reports/bench-slm.json and docs/bench-slm.md.
 *
 * Each model runs in its own child process (bench/lib/slmWorker.ts) that loads both runtimes and alternates their
 * repetitions (A B, B A, ...), so background load falls on both alike; --isolate gives each runtime its own child.
 *
 * Flags: --models a,b (names under models/ or paths; default tandem-large-base,tandem-small-chat), --threads N|auto
 * (auto: each model's count as the model registry gives it, 1 under 8 MB of ONNX, else 2; both runtimes get the same),
 * --new-tokens N (64), --prompt-tokens N (64), --prefill-reps N (60), --decode-reps N (100), --concurrency-reps N (15)
 * (about 45 s in all; with 20 decode and 3 concurrency repetitions, four runs in a row on this shared 2-core machine
 * gave decode ratios from x1.28 to x1.66 and concurrency ratios from x2.61 to x3.09),
 * --stop-at-eos (default: ignore EOS so every run decodes exactly --new-tokens), --isolate, --bandwidth-mib N (256),
 * --session-options threads|same (transformers.js gets only intraOpNumThreads, or Tandem's exact captured options),
 * --profile (V8 profile of Tandem's decode loop, first model only; writes reports/bench-slm-profile.txt, no report),
 * --write (write the reports even for a non-default model list or any other flag off its default),
 * --enforce-goals (exit 1 when a goal is missed).
 */

import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readModelFolder } from '../src/slm/folder.js';
import { DEFAULT_THREADS_RULE, defaultThreads } from '../src/slm/registry.js';
import { TextTokenizer } from '../src/slm/tokenizer.js';
import { type Child, startChild } from './lib/children.js';
import { formatProfile, reportPath, summariseProfile } from './lib/cpuprofile.js';
import { flagsOffDefault, fmt, fmtLoad, median, positive, sum } from './lib/measure.js';
import type {
  BandwidthResult,
  BandwidthTask,
  DecodeRun,
  ModelResult,
  ModelTask,
  Runtime,
  RuntimeResult,
} from './lib/slmWorker.js';
import { SLOW_STEP_MS } from './lib/slmWorker.js';
import { textTable } from './lib/textTable.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WORKER = join(ROOT, 'bench', 'lib', 'slmWorker.ts');
const TMP = join(os.tmpdir(), 'tandem-bench');
const DEFAULT_MODELS = ['tandem-large-base', 'tandem-small-chat'];
const RUNTIMES: Runtime[] = ['tandem', 'transformersjs'];
const GOAL_DECODE = 1.5;
const GOAL_CONCURRENCY = 3;

/** Long enough for any of the family's tokenizers to give 64+ tokens; the prompt is its first --prompt-tokens ids. */
const PROMPT_TEXT =
  'The committee met on a grey Tuesday morning to review the quarterly report. Sales in the northern region had ' +
  'risen by four percent, while the southern offices reported a small decline caused by late deliveries and a ' +
  'shortage of trained staff. The chair asked each manager to explain the numbers, to propose two concrete ' +
  'changes for the next quarter, and to say which risks worried them most. After a long discussion about ' +
  'suppliers, prices and the new warehouse, the committee agreed to meet again in three weeks and to publish a ' +
  'short summary for everyone in the company before the end of the month.';

/** Eight different prompts for the concurrency test (different lengths: the engine left-pads them). */
const BATCH_TEXTS = [
  'Write a short note to a colleague about the meeting tomorrow.',
  'What is the capital of France, and why is it famous?',
  'Explain in simple words how a bicycle stays upright while it moves.',
  'List three ways to save water at home.',
  'Once upon a time, in a small village near the sea, there lived an old fisherman who',
  'Summarise the main causes of the rainy season in tropical countries.',
  'Give me a recipe for a quick vegetable soup.',
  'Why do people keep cats as pets? Give two reasons.',
];

interface Summary {
  model: string;
  dir: string;
  /** Intra-op threads both runtimes ran this model with. */
  threads: number;
  onnxBytes: number;
  params: number | null;
  runtimes: Partial<Record<Runtime, RuntimeSummary>>;
  greedyMatch: boolean | null;
  greedyFirstMismatch: number | null;
  greedyCompared: number;
  tokenizerMatch: boolean | null;
  decodeRatio: number | null;
  /** The same ratio from the median step times (robust to stalls). */
  steadyRatio: number | null;
  /** Median over repetitions of Tandem run r / transformers.js run r (adjacent in time: slow drifts cancel). */
  pairedRatio: number | null;
  /** The decode ratio Tandem would reach if its own per-step JavaScript cost nothing: (ORT + tjs other) / ORT. */
  decodeRatioCeiling: number | null;
  concurrent8Tps: number | null;
  sequentialTps: number | null;
  concurrencyRatio: number | null;
  /** sequential / concurrent time inside session.run: the batching ratio with zero JavaScript around the graph. */
  concurrencyOrtRatio: number | null;
  concurrency?: RuntimeResult['concurrency'];
  boundTps: number;
  decodeFractionOfBound: number | null;
  childPids: number[];
}

interface RuntimeSummary {
  loadMs: number;
  rssLoadDeltaMb: number;
  prefillMsMedian: number;
  prefillTps: number;
  firstTokenMsMedian: number;
  prefillMsBest: number;
  decodeTps: number;
  decodeTpsRuns: number[];
  /** 1000 / the median step time: robust to scheduler stalls on a loaded machine. */
  steadyTps: number;
  e2eTps: number;
  /** Per decode step (medians): time inside onnxruntime's session.run, and everything else (the runtime's own JS). */
  ortMsPerStep: number;
  otherMsPerStep: number;
  /** Mean step time of a run (median over runs): includes the stalls. */
  meanMsPerStep: number;
  /** Share of all decode time spent in steps longer than SLOW_STEP_MS, and the share of that inside session.run. */
  slowShare: number;
  slowShareInRun: number;
  tokensPerRun: number;
  sessionOptions: Record<string, unknown> | null;
  notes: string[];
}

export async function run(argv: string[]): Promise<number> {
  const options = {
    models: { type: 'string', default: DEFAULT_MODELS.join(',') },
    threads: { type: 'string', default: 'auto' },
    'new-tokens': { type: 'string', default: '64' },
    'prompt-tokens': { type: 'string', default: '64' },
    'prefill-reps': { type: 'string', default: '60' },
    'decode-reps': { type: 'string', default: '100' },
    'concurrency-reps': { type: 'string', default: '15' },
    'bandwidth-mib': { type: 'string', default: '256' },
    'stop-at-eos': { type: 'boolean', default: false },
    'prompt-lookup': { type: 'string', default: '4' },
    'session-options': { type: 'string', default: 'threads' },
    isolate: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    write: { type: 'boolean', default: false },
    'enforce-goals': { type: 'boolean', default: false },
  } as const;
  const { values } = parseArgs({ args: argv, options, strict: true });
  /**
   * Flags that change what is measured, set off their defaults: such a run is not the published configuration, so
   * it writes no report unless --write says so.
   */
  const narrowedBy = flagsOffDefault(options, values, ['models', 'write', 'enforce-goals']);
  // 'auto': each model gets the intra-op threads the model registry gives it when serving (src/slm/registry.ts
  // defaultThreads), and transformers.js gets the same; a number imposes that count on every model.
  const forcedThreads = values.threads === 'auto' ? null : positive(values.threads, 'threads');
  const threadsFor = (dir: string) => forcedThreads ?? defaultThreads(dir);
  const threadsText =
    forcedThreads === null
      ? `each model's intra-op threads as the model registry gives them (${DEFAULT_THREADS_RULE}), the same for both runtimes`
      : `${forcedThreads} intra-op thread(s) for both runtimes`;
  const newTokens = positive(values['new-tokens'], 'new-tokens');
  const promptTokens = positive(values['prompt-tokens'], 'prompt-tokens');
  const prefillReps = positive(values['prefill-reps'], 'prefill-reps');
  const decodeReps = positive(values['decode-reps'], 'decode-reps');
  const concurrencyReps = nonNegative(values['concurrency-reps'], 'concurrency-reps');
  const bandwidthMib = positive(values['bandwidth-mib'], 'bandwidth-mib');
  const ignoreEos = !values['stop-at-eos'];
  const promptLookup = nonNegative(values['prompt-lookup'], 'prompt-lookup');
  if (!['threads', 'same'].includes(values['session-options']))
    throw new Error(
      "--session-options: 'threads' (transformers.js gets intraOpNumThreads only) or 'same' (Tandem's exact options)",
    );
  const profile = values.profile;
  const names = values.models
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!names.length) throw new Error('--models: expected a comma list of model names or folders');
  const models = names.map((n) => ({ name: n.replace(/\/+$/, '').split('/').pop() as string, dir: modelDir(n) }));
  for (const m of models) {
    if (!existsSync(join(m.dir, 'model.onnx')))
      throw new Error(`${m.dir}: no model.onnx (train/export it first, or pass --models with existing folders)`);
  }

  const budgetMs = 60_000 + models.length * (profile ? 120_000 : 150_000);
  const watchdog = setTimeout(() => {
    console.error(`bench slm: exceeded its ${Math.round(budgetMs / 1000)} s budget, killing children`);
    process.exit(1);
  }, budgetMs);
  watchdog.unref();

  const started = Date.now();
  const loadBefore = os.loadavg();
  const cpus = os.cpus().length;
  console.log(
    `bench slm: ${models.map((m) => m.name).join(', ')}; ${threadsText}; node ${process.version}; ${cpus} CPUs (${os.cpus()[0]?.model ?? '?'}); loadavg ${fmtLoad(loadBefore)}`,
  );
  if (loadBefore[0]! > cpus * 0.5)
    console.log(
      `warning: load average ${fmtLoad(loadBefore)} on ${cpus} CPUs: other processes (e.g. a training run) compete for the cores; absolute tokens/s are depressed and noisy, the ratios (same conditions, interleaved) are what to read`,
    );

  const children: Child[] = [];
  try {
    mkdirSync(TMP, { recursive: true });
    const bw = profile ? undefined : await bandwidth(bandwidthMib, children);
    if (bw)
      console.log(
        `memory bandwidth: ${gb(bw.bestBytesPerSec)} GB/s best, ${gb(bw.medianBytesPerSec)} GB/s median (read+written, ${bw.mib} MiB Float32Array.set, ${bw.copies} copies, one thread)`,
      );

    const summaries: Summary[] = [];
    for (const m of profile ? models.slice(0, 1) : models) {
      const folder = readModelFolder(m.dir);
      const tok = new TextTokenizer(folder);
      const promptIds = tok.encode(PROMPT_TEXT).slice(0, promptTokens);
      if (promptIds.length < promptTokens)
        console.log(`note: ${m.name}: the prompt text gives only ${promptIds.length} tokens`);
      const batchIds = BATCH_TEXTS.map((t) => tok.encode(t));
      const onnxBytes = onnxSize(m.dir);
      const task: ModelTask = {
        kind: 'model',
        runtimes: profile ? ['tandem'] : RUNTIMES,
        dir: m.dir,
        threads: threadsFor(m.dir),
        promptIds,
        promptText: PROMPT_TEXT,
        batchIds,
        newTokens,
        prefillReps: profile ? 2 : prefillReps,
        decodeReps: profile ? Math.max(decodeReps, 16) : decodeReps,
        concurrencyReps: profile ? Math.max(concurrencyReps, 2) : concurrencyReps,
        ignoreEos,
        promptLookup,
        sessionOptions: values['session-options'] as 'threads' | 'same',
      };
      console.log(
        `\n${m.name}: ${(onnxBytes / 2 ** 20).toFixed(1)} MiB ONNX, ${folder.config.num_hidden_layers ?? '?'} layers, vocab ${folder.config.vocab_size ?? '?'}; ${task.threads} intra-op thread(s); prompt ${promptIds.length} tokens, ${newTokens} new tokens${ignoreEos ? ' (EOS ignored)' : ''}; batch prompts ${batchIds.map((b) => b.length).join('/')} tokens`,
      );

      if (profile) {
        const dir = join(TMP, `slm-prof-${Date.now()}`);
        // No TurboFan inlining, so self time lands on the function that spends it (logSoftmax, not its caller step).
        const res = await worker({ ...task, profileDir: dir }, children, `${m.name} (profiling)`, [
          '--no-turbo-inlining',
        ]);
        const r = res.runtimes.tandem as RuntimeResult;
        const rs = summariseRuntime(r);
        const c = r.concurrency;
        const decodeTokens = task.decodeReps * newTokens;
        const concTokens = c ? c.tokensPerRound * (2 * task.concurrencyReps + 1) : 0;
        const text = [
          `=== batch-1 decode: ${task.decodeReps} runs x ${newTokens} tokens = ${decodeTokens} tokens (divide ms by ${decodeTokens / 1000} for us per token) ===\nmeasured in this run (no inlining): decode ${fmt(rs.decodeTps, 1)} tok/s; median step ORT ${fmt(rs.ortMsPerStep * 1000, 0)} us + other ${fmt(rs.otherMsPerStep * 1000, 0)} us\n\n${formatProfile(summariseProfile(join(dir, 'decode-b1.cpuprofile'), ROOT, 40))}`,
          `=== concurrency: ${task.concurrencyReps} sequential + ${task.concurrencyReps + 1} concurrent rounds of ${batchIds.length} prompts x ${newTokens} tokens = ${concTokens} tokens (divide ms by ${concTokens / 1000} for us per token) ===\nmeasured in this run (no inlining): sequential ${fmt(median(c?.sequentialTps ?? []), 1)} tok/s, concurrent ${fmt(median(c?.concurrentTps ?? []), 1)} tok/s; session.run per round sequential ${fmt(median(c?.sequentialOrtMs ?? []), 0)} ms of ${fmt(median(c?.sequentialMs ?? []), 0)} ms, concurrent ${fmt(median(c?.concurrentOrtMs ?? []), 0)} ms of ${fmt(median(c?.concurrentMs ?? []), 0)} ms\n\n${formatProfile(summariseProfile(join(dir, 'concurrent.cpuprofile'), ROOT, 40))}`,
          anatomyText(res),
          ortOpsText(res),
          variantsText(res),
        ].join('\n\n');
        const out = join(ROOT, 'reports', 'bench-slm-profile.txt');
        mkdirSync(dirname(out), { recursive: true });
        writeFileSync(
          out,
          `Tandem decode-loop CPU profile (V8 sampling profiler via node:inspector, 250 us, node --no-turbo-inlining), ${m.name}, ${task.threads} threads, ${new Date().toISOString()}, loadavg ${fmtLoad(os.loadavg())}\nGenerated by \`npm run bench -- slm --profile\`; do not edit by hand. Profiles: ${reportPath(dir)}\nonnxruntime-node runs the graph synchronously on the main thread: its native time is the anonymous native frame charged to onnxruntime-node.\n\n${text}\n`,
        );
        console.log(`\n${text}\n\nwrote ${out} (profile mode writes no bench report)`);
        return 0;
      }

      const results: ModelResult[] = [];
      if (values.isolate) {
        for (const rt of RUNTIMES)
          results.push(await worker({ ...task, runtimes: [rt] }, children, `${m.name} ${rt} (own process)`));
      } else results.push(await worker(task, children, m.name));
      const merged: Partial<Record<Runtime, RuntimeResult>> = {};
      for (const r of results) Object.assign(merged, r.runtimes);
      const s = summarise(m.name, m.dir, task.threads, onnxBytes, folder.config, merged, bw as BandwidthResult);
      s.childPids = results.map((r) => r.pid);
      summaries.push(s);
      printModel(s, promptIds.length, newTokens);
    }

    const loadAfter = os.loadavg();
    const report = buildReport(summaries, {
      threads: forcedThreads ?? 'auto',
      newTokens,
      promptTokens,
      prefillReps,
      decodeReps,
      concurrencyReps,
      ignoreEos,
      isolate: values.isolate,
      sessionOptions: values['session-options'],
      loadBefore,
      loadAfter,
      bw: bw as BandwidthResult,
      seconds: (Date.now() - started) / 1000,
    });
    console.log(`\n${table(summaries)}\n`);
    console.log(report.lines.join('\n'));
    const isDefault = DEFAULT_MODELS.every((d) => models.some((m) => m.name === d)) && narrowedBy.length === 0;
    if (isDefault || values.write) writeReports(report.json, summaries, report.lines);
    else
      console.log(
        `\n(${narrowedBy.length ? narrowedBy.map((k) => `--${k}`).join(', ') : 'custom --models'} off the default: reports/bench-slm.json and docs/bench-slm.md not written; pass --write to write them anyway)`,
      );
    if (values['enforce-goals'] && !report.goalsMet) return 1;
    return 0;
  } finally {
    clearTimeout(watchdog);
    await Promise.all(children.map((c) => c.stop('SIGTERM', 5000)));
  }
}

function ortOpsText(res: ModelResult): string {
  const o = res.ortOps;
  if (!o) return '';
  const lines = [
    `=== inside session.run: onnxruntime's per-operator profile, ${o.runs} batch-1 decode steps at past length ${o.pastLength} ===`,
    `${o.nodes} nodes run per step; ${fmt(o.runUsProfiled, 0)} us per step with ORT profiling on (profiling inflates small operators; read the shares)`,
    '',
    '  op type                        nodes   us/step   share of kernel time',
    ...o.byOp
      .slice(0, 20)
      .map(
        (r) =>
          `  ${r.op.padEnd(30)} ${String(r.nodes).padStart(5)} ${fmt(r.usPerRun, 1).padStart(9)}   ${fmt(r.pct, 1).padStart(5)}%`,
      ),
    '',
    '  slowest nodes:',
    ...o.topNodes.map((r) => `  ${fmt(r.usPerRun, 1).padStart(9)} us  ${r.node}`),
  ];
  return lines.join('\n');
}

function anatomyText(res: ModelResult): string {
  const a = res.anatomy;
  if (!a?.length) return '';
  const w = Math.max(...a.map((r) => r.piece.length));
  return [
    '=== the JavaScript of one decode step, piece by piece (normal JIT, no profiler; median us per call, per sequence) ===',
    ...a.map((r) => `  ${fmt(r.us, 1).padStart(8)} us  ${r.piece.padEnd(w)}  ${r.where}`),
  ].join('\n');
}

function variantsText(res: ModelResult): string {
  const v = res.variants;
  if (!v?.length) return '';
  return [
    '=== session.run per decode step under session-option variants (same graph; 6 interleaved rounds x 30 steps; median of round medians) ===',
    ...v.map(
      (r) =>
        `  batch ${String(r.batch).padStart(2)}  ${r.variant.padEnd(24)} ${fmt(r.msPerStep, 3)} ms   rounds [${r.rounds.map((x) => fmt(x, 2)).join(' ')}]`,
    ),
  ].join('\n');
}

function modelDir(n: string): string {
  if (isAbsolute(n) || n.includes('/')) return resolve(n);
  return join(ROOT, 'models', n);
}

/** The ONNX graph plus any external-data files next to it: what a decode step has to read. */
function onnxSize(dir: string): number {
  let total = statSync(join(dir, 'model.onnx')).size;
  for (const f of readdirSync(dir))
    if (/^model\.onnx[._]data$|^model\.onnx_data$/.test(f)) total += statSync(join(dir, f)).size;
  return total;
}

async function worker<T = ModelResult>(
  task: ModelTask | BandwidthTask,
  children: Child[],
  label: string,
  nodeFlags: string[] = [],
): Promise<T> {
  const child = startChild(label, process.execPath, [...nodeFlags, '--import', 'tsx', WORKER, JSON.stringify(task)], {
    cwd: ROOT,
  });
  children.push(child);
  try {
    const line = await child.waitForLine(/^\{"result"/, 120_000);
    return (JSON.parse(line) as { result: T }).result;
  } finally {
    await child.stop('SIGTERM', 5000);
    children.splice(children.indexOf(child), 1);
  }
}

async function bandwidth(mib: number, children: Child[]): Promise<BandwidthResult> {
  return worker<BandwidthResult>({ kind: 'bandwidth', mib, copies: 8 }, children, 'bandwidth');
}

function summariseRuntime(r: RuntimeResult): RuntimeSummary {
  const d = r.decode;
  const steps = (x: DecodeRun) => Math.max(1, x.tokens - 1);
  const prefillMsMedian = median(r.prefillMs);
  return {
    loadMs: r.loadMs,
    rssLoadDeltaMb: r.rssAfterLoadMb - r.rssBeforeLoadMb,
    prefillMsMedian,
    prefillTps: r.prefillTokens / (prefillMsMedian / 1000),
    prefillMsBest: Math.min(...r.prefillMs),
    firstTokenMsMedian: median(d.map((x) => x.firstTokenMs)),
    decodeTps: median(d.map((x) => x.decodeTps)),
    decodeTpsRuns: d.map((x) => x.decodeTps),
    steadyTps: 1000 / median(d.map((x) => x.stepMedianMs)),
    e2eTps: median(d.map((x) => x.e2eTps)),
    ortMsPerStep: median(d.map((x) => x.ortStepMedianMs)),
    otherMsPerStep: median(d.map((x) => x.otherStepMedianMs)),
    meanMsPerStep: median(d.map((x) => x.stepsMs / steps(x))),
    slowShare: sum(d.map((x) => x.slowMs)) / sum(d.map((x) => x.stepsMs)),
    slowShareInRun: sum(d.map((x) => x.slowOrtMs)) / sum(d.map((x) => x.slowMs)),
    tokensPerRun: d[0]?.tokens ?? 0,
    sessionOptions: r.sessionOptions ?? null,
    notes: r.notes,
  };
}

function summarise(
  model: string,
  dir: string,
  threads: number,
  onnxBytes: number,
  config: Record<string, unknown>,
  rs: Partial<Record<Runtime, RuntimeResult>>,
  bw: BandwidthResult,
): Summary {
  const t = rs.tandem;
  const j = rs.transformersjs;
  const runtimes: Summary['runtimes'] = {};
  if (t) runtimes.tandem = summariseRuntime(t);
  if (j) runtimes.transformersjs = summariseRuntime(j);
  let greedyMatch: boolean | null = null;
  let greedyFirstMismatch: number | null = null;
  const greedyCompared = Math.min(t?.greedyIds.length ?? 0, j?.greedyIds.length ?? 0);
  if (t && j) {
    const a = t.greedyIds;
    const b = j.greedyIds;
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i++) {
      if (a[i] !== b[i]) {
        greedyFirstMismatch = i;
        break;
      }
    }
    greedyMatch = greedyFirstMismatch === null;
  }
  const c = t?.concurrency;
  const concurrent8Tps = c ? median(c.concurrentTps) : null;
  const sequentialTps = c ? median(c.sequentialTps) : null;
  const boundTps = bw.bestBytesPerSec / onnxBytes;
  const decode = runtimes.tandem?.decodeTps;
  const tr = runtimes.tandem;
  const jr = runtimes.transformersjs;
  return {
    model,
    dir,
    threads,
    onnxBytes,
    params: typeof config.num_parameters === 'number' ? config.num_parameters : null,
    runtimes,
    greedyMatch,
    greedyFirstMismatch,
    greedyCompared,
    tokenizerMatch: j?.tokenizerMatch ?? null,
    decodeRatio: tr && jr ? tr.decodeTps / jr.decodeTps : null,
    steadyRatio: tr && jr ? tr.steadyTps / jr.steadyTps : null,
    pairedRatio:
      tr && jr && tr.decodeTpsRuns.length === jr.decodeTpsRuns.length
        ? median(tr.decodeTpsRuns.map((x, i) => x / (jr.decodeTpsRuns[i] as number)))
        : null,
    decodeRatioCeiling: tr && jr ? (jr.ortMsPerStep + jr.otherMsPerStep) / tr.ortMsPerStep : null,
    concurrent8Tps,
    sequentialTps,
    concurrencyRatio: concurrent8Tps && sequentialTps ? concurrent8Tps / sequentialTps : null,
    concurrencyOrtRatio: c ? median(c.sequentialOrtMs) / median(c.concurrentOrtMs) : null,
    concurrency: c,
    boundTps,
    decodeFractionOfBound: decode !== undefined ? decode / boundTps : null,
    childPids: [],
  };
}

function printModel(s: Summary, promptTokens: number, newTokens: number): void {
  for (const rt of RUNTIMES) {
    const r = s.runtimes[rt];
    if (!r) continue;
    console.log(
      `  ${rt.padEnd(14)} load ${fmt(r.loadMs, 0)} ms (+${fmt(r.rssLoadDeltaMb, 0)} MB RSS)  prefill ${promptTokens} tok ${fmt(r.prefillMsMedian, 2)} ms (best ${fmt(r.prefillMsBest, 2)}) = ${fmt(r.prefillTps, 0)} tok/s  decode ${fmt(r.decodeTps, 1)} tok/s [${r.decodeTpsRuns.map((x) => fmt(x, 0)).join(' ')}]  median step: ORT ${fmt(r.ortMsPerStep, 3)} ms + other ${fmt(r.otherMsPerStep, 3)} ms  e2e ${fmt(r.e2eTps, 1)} tok/s`,
    );
  }
  for (const rt of RUNTIMES) {
    const r = s.runtimes[rt];
    if (r && r.tokensPerRun !== newTokens)
      console.log(
        `  warning: ${rt} generated ${r.tokensPerRun} tokens per run, not ${newTokens} (did it stop at EOS? the engine may have changed how it reads lm.eos)`,
      );
  }
  if (s.decodeRatio !== null)
    console.log(
      `  Tandem/transformers.js decode x${fmt(s.decodeRatio, 2)} (paired runs x${fmt(s.pairedRatio ?? Number.NaN, 2)}); ceiling with zero Tandem JS per step: x${fmt(s.decodeRatioCeiling ?? Number.NaN, 2)}`,
    );
  if (s.greedyMatch !== null)
    console.log(
      `  greedy ids: ${s.greedyMatch ? `identical (${s.greedyCompared} tokens)` : `DIFFER from token ${s.greedyFirstMismatch}`}; transformers.js tokenizer ${s.tokenizerMatch ? 'gives the same prompt ids' : 'gives DIFFERENT prompt ids (both runtimes were fed Tandem ids)'}`,
    );
  const c = s.concurrency;
  if (c)
    console.log(
      `  concurrency (Tandem engine): ${c.prompts} prompts x ${newTokens} tokens sequential ${fmt(s.sequentialTps ?? Number.NaN, 1)} tok/s (${c.sequentialForwards} forwards), concurrent ${fmt(s.concurrent8Tps ?? Number.NaN, 1)} tok/s (${c.concurrentForwards} forwards) -> x${fmt(s.concurrencyRatio ?? Number.NaN, 2)} (ORT time alone: x${fmt(s.concurrencyOrtRatio ?? Number.NaN, 2)}); batched ids = alone ids for ${c.batchedMatchesSingle}/${c.prompts}`,
    );
  console.log(
    `  bandwidth bound: ${fmt(s.boundTps, 0)} tok/s (${(s.onnxBytes / 2 ** 20).toFixed(1)} MiB per token); Tandem decode is ${fmt((s.decodeFractionOfBound ?? Number.NaN) * 100, 1)}% of it`,
  );
}

interface RunInfo {
  /** --threads: a count imposed on every model, or 'auto' (each model's registry default; see the summaries). */
  threads: number | 'auto';
  newTokens: number;
  promptTokens: number;
  prefillReps: number;
  decodeReps: number;
  concurrencyReps: number;
  ignoreEos: boolean;
  isolate: boolean;
  sessionOptions: string;
  loadBefore: number[];
  loadAfter: number[];
  bw: BandwidthResult;
  seconds: number;
}

function buildReport(summaries: Summary[], info: RunInfo) {
  const head = summaries.find((s) => s.model === 'tandem-large-base') ?? summaries[0];
  const cpus = os.cpus().length;
  const perModel = (s: Summary) => ({
    dir: s.dir.startsWith(ROOT) ? s.dir.slice(ROOT.length + 1) : s.dir,
    threads: s.threads,
    onnx_bytes: s.onnxBytes,
    params: s.params,
    decode_tps: round(s.runtimes.tandem?.decodeTps, 1),
    transformersjs_decode_tps: round(s.runtimes.transformersjs?.decodeTps, 1),
    decode_ratio: round(s.decodeRatio ?? undefined, 3),
    median_step_decode_ratio: round(s.steadyRatio ?? undefined, 3),
    paired_decode_ratio: round(s.pairedRatio ?? undefined, 3),
    decode_ratio_ceiling_zero_tandem_js: round(s.decodeRatioCeiling ?? undefined, 3),
    concurrent8_tps: round(s.concurrent8Tps ?? undefined, 1),
    sequential_tps: round(s.sequentialTps ?? undefined, 1),
    concurrency_ratio: round(s.concurrencyRatio ?? undefined, 3),
    concurrency_ratio_ort_only: round(s.concurrencyOrtRatio ?? undefined, 3),
    prefill_tps: round(s.runtimes.tandem?.prefillTps, 0),
    transformersjs_prefill_tps: round(s.runtimes.transformersjs?.prefillTps, 0),
    prefill_ms: round(s.runtimes.tandem?.prefillMsMedian, 3),
    transformersjs_prefill_ms: round(s.runtimes.transformersjs?.prefillMsMedian, 3),
    bandwidth_bound_tps: round(s.boundTps, 0),
    decode_fraction_of_bound: round(s.decodeFractionOfBound ?? undefined, 4),
    greedy_ids_match: s.greedyMatch,
    greedy_first_mismatch: s.greedyFirstMismatch,
    greedy_tokens_compared: s.greedyCompared,
    tokenizer_match: s.tokenizerMatch,
    batched_ids_match_single: s.concurrency ? `${s.concurrency.batchedMatchesSingle}/${s.concurrency.prompts}` : null,
    runtimes: Object.fromEntries(
      Object.entries(s.runtimes).map(([k, r]) => [
        k,
        {
          load_ms: round(r.loadMs, 0),
          rss_load_delta_mb: round(r.rssLoadDeltaMb, 1),
          prefill_ms_median: round(r.prefillMsMedian, 3),
          prefill_ms_best: round(r.prefillMsBest, 3),
          prefill_tps: round(r.prefillTps, 0),
          first_token_ms_median: round(r.firstTokenMsMedian, 3),
          decode_tps: round(r.decodeTps, 1),
          decode_tps_runs: r.decodeTpsRuns.map((x) => round(x, 1)),
          median_step_decode_tps: round(r.steadyTps, 1),
          mean_ms_per_step: round(r.meanMsPerStep, 4),
          e2e_tps: round(r.e2eTps, 1),
          ort_ms_per_step: round(r.ortMsPerStep, 4),
          other_ms_per_step: round(r.otherMsPerStep, 4),
          slow_step_share: round(r.slowShare, 3),
          slow_step_share_in_run: round(r.slowShareInRun, 3),
          tokens_per_run: r.tokensPerRun,
          session_options: r.sessionOptions,
          notes: r.notes,
        },
      ]),
    ),
    concurrency: s.concurrency ?? null,
  });
  const headJson = head ? perModel(head) : undefined;
  const goals = summaries.map((s) => ({
    model: s.model,
    decode: s.decodeRatio !== null ? s.decodeRatio >= GOAL_DECODE : null,
    concurrency: s.concurrencyRatio !== null ? s.concurrencyRatio >= GOAL_CONCURRENCY : null,
  }));
  // The issue's goals hold for every model benchmarked (tandem-large-base and tandem-small-chat), not the first only.
  const goalsMet = goals.length > 0 && goals.every((g) => g.decode === true && g.concurrency === true);
  const json: Record<string, unknown> = {
    date: new Date().toISOString(),
    model: head?.model ?? null,
    decode_tps: headJson?.decode_tps ?? null,
    transformersjs_decode_tps: headJson?.transformersjs_decode_tps ?? null,
    concurrent8_tps: headJson?.concurrent8_tps ?? null,
    sequential_tps: headJson?.sequential_tps ?? null,
    decode_ratio: headJson?.decode_ratio ?? null,
    concurrency_ratio: headJson?.concurrency_ratio ?? null,
    prefill_tps: headJson?.prefill_tps ?? null,
    transformersjs_prefill_tps: headJson?.transformersjs_prefill_tps ?? null,
    bandwidth_bytes_per_s: Math.round(info.bw.bestBytesPerSec),
    bandwidth_bytes_per_s_median: Math.round(info.bw.medianBytesPerSec),
    bandwidth_bound_tps: headJson?.bandwidth_bound_tps ?? null,
    decode_fraction_of_bound: headJson?.decode_fraction_of_bound ?? null,
    goal_decode_ratio: GOAL_DECODE,
    goal_concurrency_ratio: GOAL_CONCURRENCY,
    goals_met: goalsMet,
    goals,
    threads: info.threads,
    session_options_mode: info.sessionOptions,
    session_options: {
      tandem: head?.runtimes.tandem?.sessionOptions ?? null,
      transformersjs: head?.runtimes.transformersjs?.sessionOptions ?? null,
    },
    node: process.version,
    onnxruntime_node: pkgVersion('onnxruntime-node'),
    transformersjs: pkgVersion('@huggingface/transformers'),
    cpus,
    cpu_model: os.cpus()[0]?.model,
    loadavg_before: info.loadBefore.map((x) => round(x)),
    loadavg_after: info.loadAfter.map((x) => round(x)),
    prompt_tokens: info.promptTokens,
    new_tokens: info.newTokens,
    ignore_eos: info.ignoreEos,
    prefill_reps: info.prefillReps,
    decode_reps: info.decodeReps,
    concurrency_reps: info.concurrencyReps,
    process_layout: info.isolate
      ? 'one child process per runtime per model, run one after the other'
      : 'one child process per model holding both runtimes, repetitions alternated A B / B A',
    seconds: round(info.seconds, 1),
    models: Object.fromEntries(summaries.map((s) => [s.model, perModel(s)])),
  };
  const lines: string[] = [];
  for (const s of summaries) {
    const g = goals.find((x) => x.model === s.model);
    lines.push(
      `${s.model}: Tandem/transformers.js decode tok/s x${fmt(s.decodeRatio ?? Number.NaN, 2)} (goal >= ${GOAL_DECODE}: ${verdict(g?.decode)}; paired runs x${fmt(s.pairedRatio ?? Number.NaN, 2)}; ceiling if Tandem's per-step JS cost nothing x${fmt(s.decodeRatioCeiling ?? Number.NaN, 2)}), concurrent8/sequential x${fmt(s.concurrencyRatio ?? Number.NaN, 2)} (goal >= ${GOAL_CONCURRENCY}: ${verdict(g?.concurrency)}; ORT time alone x${fmt(s.concurrencyOrtRatio ?? Number.NaN, 2)}), prefill x${fmt((s.runtimes.tandem?.prefillTps ?? Number.NaN) / (s.runtimes.transformersjs?.prefillTps ?? Number.NaN), 2)}, greedy ids ${s.greedyMatch === null ? 'not compared' : s.greedyMatch ? 'identical' : `differ at ${s.greedyFirstMismatch}`}`,
    );
  }
  lines.push(
    `bandwidth ${gb(info.bw.bestBytesPerSec)} GB/s (read+written, best of ${info.bw.copies}); batch-1 decode bound = bandwidth / ONNX bytes: ${summaries.map((s) => `${s.model} ${fmt(s.boundTps, 0)} tok/s (Tandem at ${fmt((s.decodeFractionOfBound ?? Number.NaN) * 100, 1)}%)`).join(', ')}`,
  );
  // Before only: the bench itself keeps up to --threads cores busy, which the load average after it includes.
  if ((info.loadBefore[0] ?? 0) > cpus * 0.5)
    lines.push(
      `warning: load average ${fmtLoad(info.loadBefore)} before the run on ${cpus} CPUs: other processes competed for the cores; absolute tok/s are depressed and noisy, the interleaved ratios are the steadier figures`,
    );
  lines.push(`overall (${goals.map((g) => g.model).join(', ')}): ${goalsMet ? 'goals MET' : 'goals NOT met'}`);
  return { json, lines, goalsMet };
}

function table(summaries: Summary[]): string {
  const head = [
    'model',
    'runtime',
    'prefill tok/s',
    'decode tok/s',
    'ORT ms/step',
    'other ms/step',
    'e2e tok/s',
    'load ms',
    'RSS +MB',
  ];
  const rows: string[][] = [];
  for (const s of summaries)
    for (const rt of RUNTIMES) {
      const r = s.runtimes[rt];
      if (!r) continue;
      rows.push([
        s.model,
        rt,
        fmt(r.prefillTps, 0),
        fmt(r.decodeTps, 1),
        fmt(r.ortMsPerStep, 3),
        fmt(r.otherMsPerStep, 3),
        fmt(r.e2eTps, 1),
        fmt(r.loadMs, 0),
        fmt(r.rssLoadDeltaMb, 0),
      ]);
    }
  return textTable(head, rows, (i) => i >= 2);
}

function mdTables(summaries: Summary[]): string {
  const out = [
    `| model | runtime | prefill 64 tok, ms | prefill tok/s | first token ms | decode tok/s (b=1) | ORT ms/step | other ms/step | decode time in steps > ${SLOW_STEP_MS} ms (inside run) | end-to-end tok/s | load ms | RSS +MB at load |`,
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const s of summaries)
    for (const rt of RUNTIMES) {
      const r = s.runtimes[rt];
      if (!r) continue;
      out.push(
        `| ${s.model} | ${rt === 'tandem' ? 'Tandem' : 'transformers.js'} | ${fmt(r.prefillMsMedian, 2)} | ${fmt(r.prefillTps, 0)} | ${fmt(r.firstTokenMsMedian, 2)} | ${fmt(r.decodeTps, 1)} | ${fmt(r.ortMsPerStep, 3)} | ${fmt(r.otherMsPerStep, 3)} | ${fmt(r.slowShare * 100, 0)}% (${fmt(r.slowShareInRun * 100, 0)}%) | ${fmt(r.e2eTps, 1)} | ${fmt(r.loadMs, 0)} | ${fmt(r.rssLoadDeltaMb, 0)} |`,
      );
    }
  out.push(
    '',
    '| model | Tandem / transformers.js decode | same, paired runs | ceiling (zero Tandem JS) | greedy ids | sequential tok/s | concurrent 8 tok/s | concurrent / sequential | same, ORT time only | batched = alone | bandwidth bound tok/s | Tandem decode / bound |',
    '|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|',
  );
  for (const s of summaries) {
    const c = s.concurrency;
    out.push(
      `| ${s.model} | x${fmt(s.decodeRatio ?? Number.NaN, 2)} | x${fmt(s.pairedRatio ?? Number.NaN, 2)} | x${fmt(s.decodeRatioCeiling ?? Number.NaN, 2)} | ${s.greedyMatch === null ? 'n/a' : s.greedyMatch ? `identical (${s.greedyCompared})` : `differ at ${s.greedyFirstMismatch}`} | ${fmt(s.sequentialTps ?? Number.NaN, 1)} | ${fmt(s.concurrent8Tps ?? Number.NaN, 1)} | x${fmt(s.concurrencyRatio ?? Number.NaN, 2)} | x${fmt(s.concurrencyOrtRatio ?? Number.NaN, 2)} | ${c ? `${c.batchedMatchesSingle}/${c.prompts}` : 'n/a'} | ${fmt(s.boundTps, 0)} | ${fmt((s.decodeFractionOfBound ?? Number.NaN) * 100, 1)}% |`,
    );
  }
  return out.join('\n');
}

function writeReports(json: Record<string, unknown>, summaries: Summary[], lines: string[]): void {
  const jsonPath = join(ROOT, 'reports', 'bench-slm.json');
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  const mdPath = join(ROOT, 'docs', 'bench-slm.md');
  mkdirSync(dirname(mdPath), { recursive: true });
  const date = String(json.date).slice(0, 10);
  writeFileSync(
    mdPath,
    `# Local model runtime benchmark (${date})

Generated by \`npm run bench -- slm\` on ${json.date}; do not edit by hand.

Tandem's runtime (\`src/slm\`: \`CausalLM\` + \`GenerationEngine\`) against transformers.js ${json.transformersjs}, both on
onnxruntime-node ${json.onnxruntime_node} (one installed copy), the **same \`model.onnx\`** (transformers.js reads it through a temp
folder of symlinks that gives it the \`onnx/model.onnx\` layout), fp32, and the same intra-op threads for both: ${threadsDoc(json, summaries)}. Session options
as passed to \`InferenceSession.create\` (captured): Tandem \`${optionsText(json, 'tandem')}\`; transformers.js
\`${optionsText(json, 'transformersjs')}\` (${json.session_options_mode === 'same' ? "`--session-options same`: Tandem's exact options" : "`--session-options threads`: only the thread count is imposed, the rest are transformers.js' own defaults; `--session-options same` gives it Tandem's exact options"}).
Node ${json.node}, ${json.cpus} CPUs (${json.cpu_model}), load average ${(json.loadavg_before as number[]).join(' ')} before and
${(json.loadavg_after as number[]).join(' ')} after the run (${json.seconds} s).

${mdTables(summaries)}

${lines.map((l) => `- ${l.replace(/\s+/g, ' ')}`).join('\n')}

Goals: Tandem decode at least ${GOAL_DECODE}x transformers.js at batch 1; 8 concurrent requests at least ${GOAL_CONCURRENCY}x the
tokens/s of the same 8 one after another.

How it is measured:

- **Prefill**: one forward pass of a ${json.prompt_tokens}-token prompt at batch 1 with an empty KV cache (\`lm.forward\` /
  transformers.js \`model.forward\`), median of ${json.prefill_reps}.
- **Decode**: greedy generation of ${json.new_tokens} new tokens at batch 1 with the KV cache (\`engine.generate(ids,
  { temperature: 0 })\` / \`model.generate({ do_sample: false })\` with a streamer), prefill **excluded**: tokens/s is
  (tokens - 1) / (time of the last token - time of the first), the same definition for both; median of ${json.decode_reps} runs.
  Every measured run (and prefill) is preceded by an untimed one of the same runtime, so it starts with its own
  weights in the CPU caches rather than the other runtime's.
  "End-to-end" includes the prefill. ${json.ignore_eos ? 'EOS is ignored in both runtimes (Tandem: the engine is handed the model with an empty end-of-sequence set; transformers.js: `eos_token_id: null`), so every run decodes exactly the same number of tokens, as vLLM benchmarks do.' : 'Generation stops at EOS.'}
- **Paired runs**: the median over repetitions of (Tandem run r / transformers.js run r); the two runs of a pair are
  adjacent in time, so slow drifts in background load cancel.
- **ORT ms/step** is the median time of the session's run call per decode step (an instance-level timing wrapper in
  the bench child): for transformers.js onnxruntime-node's public \`session.run\` (a setImmediate hop, the native run,
  re-wrapping of the outputs); for Tandem its direct call of the same native run (\`src/slm/session.ts\`: no hop and no
  re-wrapping; the event loop is let in at least every 2 ms instead). Both run the same graph, so the difference in this
  column is that per-call overhead. **Other ms/step** is the median of everything else per step: the runtime's own
  JavaScript (tensor building, BigInt conversion, KV bookkeeping, logits processing, sampling, detokenising).
  **Ceiling** = (transformers.js ORT + other) / Tandem ORT: the ratio Tandem would reach at one token per step if its
  own per-step JavaScript took no time at all; prompt-lookup speculation (several tokens per step) can pass it.
- **Decode time in steps > ${SLOW_STEP_MS} ms**: the share of all decode time spent in steps longer than ${SLOW_STEP_MS} ms (stalls: the
  family's steps take 0.2-0.6 ms), and in brackets the part of it inside the run call. A stall inside the run is
  onnxruntime's threads or the machine; outside it, the runtime's own JavaScript or garbage collection.
- **Greedy ids**: the first decode run's ids of both runtimes, fed the same prompt ids (Tandem's tokenizer).
- **Concurrency** (Tandem only): ${BATCH_TEXTS.length} different prompts through one \`GenerationEngine\` (\`maxBatch: 8\`), all
  submitted at once (continuously batched) vs one after another; total generated tokens / wall time including prefill,
  median of ${json.concurrency_reps} rounds each (ABBA order, after a warm-up round). "ORT time only": sequential / concurrent time
  spent inside \`session.run\`, the batching gain the graph itself offers. "batched = alone": prompts whose greedy ids
  were the same in both.
- **Bandwidth bound**: one-thread \`Float32Array.set\` of a 256 MiB buffer, best of 8, bytes read + written per second;
  bound tokens/s = bandwidth / ONNX file bytes (a batch-1 decode step that reads every weight once). Models this small
  largely fit in the CPU caches, so the bound is loose; per-step overheads, not DRAM, limit them.
- **Processes**: ${json.process_layout}. Each child loads Tandem first, then transformers.js; RSS deltas are per
  load, and Tandem's includes onnxruntime's one-time native initialisation (\`--isolate\` gives each runtime its own).
  The machine has ${json.cpus} cores and may be training a model in the background: absolute numbers move with the load
  average, the ratios come from interleaved runs under the same conditions.

Where the time goes (V8 profile of Tandem's decode loop, onnxruntime's per-operator profile, the per-step pieces of
Tandem's JavaScript timed alone, and session-option variants such as 1 thread or intra-op spinning off):
\`npm run bench -- slm --profile\` writes \`reports/bench-slm-profile.txt\`. Raw numbers: \`reports/bench-slm.json\`.
`,
  );
  console.log(`\nwrote ${jsonPath} and ${mdPath}`);
}

function threadsDoc(json: Record<string, unknown>, summaries: Summary[]): string {
  const per = summaries.map((s) => `${s.model} ${s.threads}`).join(', ');
  return json.threads === 'auto'
    ? `**${per}**, as the model registry gives them when serving (${DEFAULT_THREADS_RULE}; \`--threads N\` imposes N)`
    : `**${per}** (\`--threads ${json.threads}\`; the default gives each model the model registry's count)`;
}

function optionsText(json: Record<string, unknown>, rt: Runtime): string {
  const o = (json.session_options as Record<Runtime, Record<string, unknown> | null>)[rt];
  return o ? JSON.stringify(o) : 'n/a';
}

function pkgVersion(name: string): string | null {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return null;
  }
}

function nonNegative(v: string | undefined, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be an integer >= 0`);
  return n;
}
const verdict = (b: boolean | null | undefined) => (b === null || b === undefined ? 'n/a' : b ? 'met' : 'NOT met');
const gb = (bps: number) => (bps / 1e9).toFixed(1);
const round = (n: number | undefined, d = 2) =>
  n === undefined || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d;
