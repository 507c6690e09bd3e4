/**
 * Child process of `npm run bench -- slm` (bench/slm.ts). One child per model: it loads the runtimes it is given
 * (Tandem's CausalLM + GenerationEngine, and/or transformers.js over the same ONNX file and thread count), then
 * alternates their measurements repetition by repetition (A B, B A, ...) so that background load (a model trains on
 * this 2-core machine) falls on both alike. Or it measures memory bandwidth. In profile mode it also records V8
 * profiles, onnxruntime's per-operator profile, session-option variants and the per-step pieces of Tandem's
 * JavaScript. Prints one `{"result": ...}` line on stdout.
 *
 * `node --import tsx bench/lib/slmWorker.ts '<WorkerTask JSON>'`
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import { basename, join } from 'node:path';
import ort from 'onnxruntime-node';
import type { GraphSession } from '../../src/slm/session.js';
import { median } from './measure.js';

export type Runtime = 'tandem' | 'transformersjs';

export interface ModelTask {
  kind: 'model';
  /** Loaded in this order; measurements alternate between them. */
  runtimes: Runtime[];
  /** Model folder (absolute). */
  dir: string;
  threads: number;
  /** The ~64-token prompt, tokenised by Tandem's tokenizer; the same ids go to both runtimes. */
  promptIds: number[];
  /** Its text, so the transformers.js side can check its own tokenizer agrees. */
  promptText: string;
  /** The prompts of the concurrency test (Tandem only). */
  batchIds: number[][];
  newTokens: number;
  prefillReps: number;
  decodeReps: number;
  /** Sequential-vs-concurrent rounds (Tandem only; 0 skips the test). */
  concurrencyReps: number;
  /** Generate exactly `newTokens` even past an end-of-sequence token (both runtimes alike). */
  ignoreEos: boolean;
  /**
   * Tandem's prompt-lookup drafts for the batch-1 decode (its default, 4; 0 = off). Output is identical either way;
   * the concurrency test always runs with it off, so that it measures batching alone.
   */
  promptLookup: number;
  /**
   * When set, the V8 CPU profiler (node:inspector) records the batch-1 decode runs and the concurrency rounds
   * separately, into decode-b1.cpuprofile and concurrent.cpuprofile in this folder; load and prefill stay out.
   */
  profileDir?: string;
  /**
   * Session options for transformers.js: 'threads' = only intraOpNumThreads (plus transformers.js' own defaults),
   * 'same' = exactly the options Tandem passed to onnxruntime (captured at its load).
   */
  sessionOptions: 'threads' | 'same';
}

export interface BandwidthTask {
  kind: 'bandwidth';
  mib: number;
  copies: number;
}

export type WorkerTask = ModelTask | BandwidthTask;

export interface DecodeRun {
  /** Tokens generated. */
  tokens: number;
  /** From the call to the first generated token (prefill + first sampling), ms. */
  firstTokenMs: number;
  /** (tokens - 1) / time between the first and the last generated token: decode only, prefill excluded. */
  decodeTps: number;
  /** tokens / time from the call to the last token. */
  e2eTps: number;
  /** Time inside onnxruntime's session.run during the decode steps (after the first token), ms. */
  ortMs: number;
  /** Wall time of the decode steps (first to last token), ms. */
  stepsMs: number;
  /**
   * Medians over the run's steps (robust to the scheduler stalls a loaded machine adds): a step's wall time, its time
   * inside session.run, and the rest.
   */
  stepMedianMs: number;
  ortStepMedianMs: number;
  otherStepMedianMs: number;
  /** Wall time of the steps that took longer than SLOW_STEP_MS, and the part of it inside session.run, ms. */
  slowMs: number;
  slowOrtMs: number;
}

/** A decode step this long is a stall (the family's steps take 0.2-0.6 ms): reported as the tail. */
export const SLOW_STEP_MS = 1;

export interface Concurrency {
  sequentialTps: number[];
  concurrentTps: number[];
  sequentialMs: number[];
  concurrentMs: number[];
  tokensPerRound: number;
  /** Prompts whose greedy ids were the same batched (all at once) as alone. */
  batchedMatchesSingle: number;
  prompts: number;
  /** session.run calls in one concurrent round (prefills + one per decode step) and in one sequential round. */
  concurrentForwards: number;
  sequentialForwards: number;
  /** Time inside session.run per round: what the rounds would take with no JavaScript around the graph. */
  concurrentOrtMs: number[];
  sequentialOrtMs: number[];
}

export interface RuntimeResult {
  runtime: Runtime;
  loadMs: number;
  rssBeforeLoadMb: number;
  rssAfterLoadMb: number;
  prefillTokens: number;
  prefillMs: number[];
  decode: DecodeRun[];
  /** Greedy ids of the first measured decode run. */
  greedyIds: number[];
  /** transformers.js only: whether its tokenizer gives Tandem's ids for the prompt text. */
  tokenizerMatch?: boolean;
  concurrency?: Concurrency;
  /** The options this runtime passed to InferenceSession.create (captured). */
  sessionOptions?: Record<string, unknown>;
  notes: string[];
}

export interface ModelResult {
  pid: number;
  rssEndMb: number;
  runtimes: Partial<Record<Runtime, RuntimeResult>>;
  /** Profile mode: onnxruntime's own per-operator profile of batch-1 decode steps. */
  ortOps?: OrtOpProfile;
  /** Profile mode: session.run time of a decode step under session-option variants (interleaved). */
  variants?: VariantTiming[];
  /** Profile mode: the JavaScript pieces of one Tandem decode step, each timed alone (normal JIT, no profiler). */
  anatomy?: AnatomyRow[];
}

export interface AnatomyRow {
  piece: string;
  /** Median microseconds per call (per decode step of one sequence unless the name says otherwise). */
  us: number;
  where: string;
}

export interface OrtOpProfile {
  runs: number;
  pastLength: number;
  /** Mean model_run duration with profiling on (profiling itself slows small operators down). */
  runUsProfiled: number;
  nodes: number;
  byOp: { op: string; nodes: number; usPerRun: number; pct: number }[];
  topNodes: { node: string; usPerRun: number }[];
}

export interface VariantTiming {
  variant: string;
  batch: number;
  /** Median over rounds of each round's median session.run time, ms. */
  msPerStep: number;
  rounds: number[];
}

export interface BandwidthResult {
  mib: number;
  copies: number;
  /** Bytes read + written per second by the best copy. */
  bestBytesPerSec: number;
  medianBytesPerSec: number;
}

const rssMb = () => Math.round((process.memoryUsage().rss / 2 ** 20) * 10) / 10;
const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Accumulated time in, and number of, an onnxruntime session's run calls. */
interface RunTimer {
  ms: number;
  calls: number;
}
type Runnable = { run: (...a: never[]) => Promise<unknown> };
/** Wraps one session object's run (an own property on that instance; the classes are untouched). */
function timeRuns(session: Runnable): RunTimer {
  const t: RunTimer = { ms: 0, calls: 0 };
  const orig = session.run.bind(session) as (...a: unknown[]) => Promise<unknown>;
  (session as { run: unknown }).run = async (...a: unknown[]) => {
    const t0 = performance.now();
    try {
      return await orig(...a);
    } finally {
      t.ms += performance.now() - t0;
      t.calls++;
    }
  };
  return t;
}

/** A decode run from the timestamp of each generated token and the ORT time accumulated by then. */
function decodeRun(start: number, stamps: number[], ortAt: number[]): DecodeRun {
  const first = stamps[0] ?? Number.NaN;
  const last = stamps.at(-1) ?? Number.NaN;
  const n = stamps.length;
  const step: number[] = [];
  const ort: number[] = [];
  const other: number[] = [];
  let slowMs = 0;
  let slowOrtMs = 0;
  for (let i = 1; i < n; i++) {
    const w = (stamps[i] as number) - (stamps[i - 1] as number);
    const o = (ortAt[i] as number) - (ortAt[i - 1] as number);
    step.push(w);
    ort.push(o);
    other.push(w - o);
    if (w > SLOW_STEP_MS) {
      slowMs += w;
      slowOrtMs += Math.min(o, w);
    }
  }
  return {
    tokens: n,
    firstTokenMs: first - start,
    decodeTps: n > 1 ? (n - 1) / ((last - first) / 1000) : Number.NaN,
    e2eTps: n / ((last - start) / 1000),
    ortMs: (ortAt.at(-1) ?? 0) - (ortAt[0] ?? 0),
    stepsMs: last - first,
    stepMedianMs: n > 1 ? median(step) : Number.NaN,
    ortStepMedianMs: n > 1 ? median(ort) : Number.NaN,
    otherStepMedianMs: n > 1 ? median(other) : Number.NaN,
    slowMs,
    slowOrtMs,
  };
}

async function bandwidth(task: BandwidthTask): Promise<BandwidthResult> {
  const n = (task.mib * 2 ** 20) / 4;
  const src = new Float32Array(n);
  const dst = new Float32Array(n);
  for (let i = 0; i < n; i += 1024) src[i] = i; // touch every page
  dst.set(src); // and these
  const rates: number[] = [];
  for (let i = 0; i < task.copies; i++) {
    const t0 = process.hrtime.bigint();
    dst.set(src); // a memcpy: n floats read and n written
    const ns = Number(process.hrtime.bigint() - t0);
    rates.push((2 * n * 4) / (ns / 1e9));
  }
  if (dst[1024] !== src[1024]) throw new Error('copy check failed');
  return { mib: task.mib, copies: task.copies, bestBytesPerSec: Math.max(...rates), medianBytesPerSec: median(rates) };
}

/** One runtime, loaded and ready: the operations the child alternates. */
interface Side {
  result: RuntimeResult;
  timer: RunTimer;
  prefill(): Promise<number>;
  /** Greedy generation of task.newTokens tokens from the prompt, timed per token. */
  decode(): Promise<{ run: DecodeRun; ids: number[] }>;
  /** A short generation, to warm up. */
  warm(): Promise<void>;
}

function emptyResult(runtime: Runtime, task: ModelTask): RuntimeResult {
  return {
    runtime,
    loadMs: 0,
    rssBeforeLoadMb: 0,
    rssAfterLoadMb: 0,
    prefillTokens: task.promptIds.length,
    prefillMs: [],
    decode: [],
    greedyIds: [],
    notes: [],
  };
}

type CreateFn = (...a: unknown[]) => Promise<ort.InferenceSession>;
const factory = ort.InferenceSession as unknown as { create: CreateFn };

/** Runs `f` with InferenceSession.create wrapped, recording the options (its last object argument) it was given. */
async function spyCreate<T>(f: () => Promise<T>): Promise<{ value: T; options: Record<string, unknown> | undefined }> {
  const orig = factory.create;
  let options: Record<string, unknown> | undefined;
  factory.create = (...a: unknown[]) => {
    const i = a.findLastIndex((x) => x !== null && typeof x === 'object' && !ArrayBuffer.isView(x));
    if (i >= 0) options = { ...(a[i] as Record<string, unknown>) };
    return orig.apply(ort.InferenceSession, a);
  };
  try {
    return { value: await f(), options };
  } finally {
    factory.create = orig;
  }
}

/** The options Tandem's runtime passed to onnxruntime when it opened this model's graph. */
function tandemOptionsOf(lm: object): Record<string, unknown> {
  return { ...(lm as unknown as { session: GraphSession }).session.options };
}

/** The options Tandem's runtime passes to onnxruntime, from a throw-away load. */
async function tandemSessionOptions(task: ModelTask): Promise<Record<string, unknown>> {
  const { CausalLM } = await import('../../src/slm/causalLM.js');
  const lm = await CausalLM.load(task.dir, { threads: task.threads });
  await lm.release();
  return tandemOptionsOf(lm);
}

async function loadTandem(task: ModelTask) {
  const { CausalLM } = await import('../../src/slm/causalLM.js');
  const { GenerationEngine } = await import('../../src/slm/engine.js');
  const result = emptyResult('tandem', task);
  result.rssBeforeLoadMb = rssMb();
  const t0 = performance.now();
  const lm = await CausalLM.load(task.dir, { threads: task.threads });
  result.loadMs = performance.now() - t0;
  result.rssAfterLoadMb = rssMb();
  result.sessionOptions = tandemOptionsOf(lm);
  const timer = timeRuns((lm as unknown as { session: Runnable }).session);
  // ignore_eos, as vLLM's benchmarks do: the engine is handed the model with an empty end-of-sequence set, so every
  // run decodes exactly newTokens. Everything else (forward, tokenizer, KV cache, sampling) is the real code path.
  const target = task.ignoreEos ? (Object.create(lm, { eos: { value: new Set<number>() } }) as typeof lm) : lm;
  if (task.ignoreEos) result.notes.push('ignore_eos: engine handed the model with an empty end-of-sequence set');
  const engine = new GenerationEngine(target, { maxBatch: 8, queueLimit: 64, promptLookup: task.promptLookup });
  const batching = new GenerationEngine(target, { maxBatch: 8, queueLimit: 64, promptLookup: 0 });
  const draftNote = result.notes.length;
  if (task.promptLookup > 0) result.notes.push('');
  const prompt = task.promptIds;
  const single = {
    ids: [prompt],
    mask: [prompt.map(() => 1)],
    positions: [prompt.map((_, i) => i)],
  };
  const side: Side = {
    result,
    timer,
    async prefill() {
      const s = performance.now();
      await lm.forward({ ...single, past: lm.emptyCache(1) });
      return performance.now() - s;
    },
    async decode() {
      const stamps: number[] = [];
      const ortAt: number[] = [];
      const start = performance.now();
      const res = await engine.generate(prompt, {
        maxTokens: task.newTokens,
        temperature: 0,
        onText: (_d, tok) => {
          if (!tok) return;
          stamps.push(performance.now());
          ortAt.push(timer.ms);
        },
      });
      if (task.promptLookup > 0) {
        result.notes[draftNote] =
          `batch-1 decode with prompt-lookup speculation (up to ${task.promptLookup} drafts per check; output identical to plain greedy): ` +
          `${engine.acceptedDrafts} of ${engine.drafted} draft tokens kept so far`;
      }
      return { run: decodeRun(start, stamps, ortAt), ids: res.tokens.map((t) => t.id) };
    },
    async warm() {
      await engine.generate(prompt, { maxTokens: 8, temperature: 0 });
    },
  };

  /** Sequential vs concurrent generation of the batch prompts through the one engine. */
  const concurrency = async (): Promise<Concurrency> => {
    const batch = task.batchIds;
    const c: Concurrency = {
      sequentialTps: [],
      concurrentTps: [],
      sequentialMs: [],
      concurrentMs: [],
      tokensPerRound: 0,
      batchedMatchesSingle: 0,
      prompts: batch.length,
      concurrentForwards: 0,
      sequentialForwards: 0,
      concurrentOrtMs: [],
      sequentialOrtMs: [],
    };
    let singleIds: number[][] = [];
    let batchedIds: number[][] = [];
    const opts = { maxTokens: task.newTokens, temperature: 0 };
    const sequential = async () => {
      const calls = timer.calls;
      const ort0 = timer.ms;
      const s = performance.now();
      const out: number[][] = [];
      for (const p of batch) out.push((await batching.generate(p, opts)).tokens.map((t) => t.id));
      const ms = performance.now() - s;
      const toks = out.reduce((a, o) => a + o.length, 0);
      c.sequentialMs.push(ms);
      c.sequentialTps.push(toks / (ms / 1000));
      c.sequentialForwards = timer.calls - calls;
      c.sequentialOrtMs.push(timer.ms - ort0);
      c.tokensPerRound = toks;
      singleIds = out;
    };
    const concurrent = async () => {
      const calls = timer.calls;
      const ort0 = timer.ms;
      const s = performance.now();
      const res = await Promise.all(batch.map((p) => batching.generate(p, opts)));
      const ms = performance.now() - s;
      const out = res.map((r) => r.tokens.map((t) => t.id));
      c.concurrentMs.push(ms);
      c.concurrentTps.push(out.reduce((a, o) => a + o.length, 0) / (ms / 1000));
      c.concurrentForwards = timer.calls - calls;
      c.concurrentOrtMs.push(timer.ms - ort0);
      batchedIds = out;
    };
    await concurrent(); // warm-up at batch 8 (ORT sizes its buffers for the bigger shapes); not recorded
    c.concurrentMs.length = 0;
    c.concurrentTps.length = 0;
    c.concurrentOrtMs.length = 0;
    for (let r = 0; r < task.concurrencyReps; r++) {
      // ABBA, so a drift in background load falls on both alike.
      if (r % 2 === 0) {
        await sequential();
        await concurrent();
      } else {
        await concurrent();
        await sequential();
      }
    }
    c.batchedMatchesSingle = singleIds.filter((ids, i) => same(ids, batchedIds[i] ?? [])).length;
    return c;
  };
  return { side, concurrency, lm };
}

/**
 * transformers.js wants `<localModelPath>/<name>/onnx/model.onnx`: a temp folder of symlinks to the model's own
 * files gives it that layout over the very same ONNX file Tandem loads.
 */
function tjsFolder(dir: string): { root: string; name: string } {
  const root = join(os.tmpdir(), 'tandem-bench', `tjs-${process.pid}`);
  const name = basename(dir);
  const into = join(root, name);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(into, 'onnx'), { recursive: true });
  for (const f of [
    'config.json',
    'generation_config.json',
    'tokenizer.json',
    'tokenizer_config.json',
    'special_tokens_map.json',
  ]) {
    try {
      symlinkSync(join(dir, f), join(into, f));
    } catch {
      // optional files
    }
  }
  symlinkSync(join(dir, 'model.onnx'), join(into, 'onnx', 'model.onnx'));
  return { root, name };
}

async function loadTransformersJs(
  task: ModelTask,
  tandemOptions: Record<string, unknown> | undefined,
): Promise<{ side: Side; cleanup: () => void }> {
  const { AutoModelForCausalLM, AutoTokenizer, BaseStreamer, Tensor, env } = await import('@huggingface/transformers');
  const result = emptyResult('transformersjs', task);
  const { root, name } = tjsFolder(task.dir);
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = `${root}/`;
  env.useFSCache = false;
  env.useBrowserCache = false;

  const sessionOptions =
    task.sessionOptions === 'same'
      ? (tandemOptions ?? (await tandemSessionOptions(task)))
      : { intraOpNumThreads: task.threads };
  result.rssBeforeLoadMb = rssMb();
  const t0 = performance.now();
  const tokenizer = await AutoTokenizer.from_pretrained(name, { local_files_only: true });
  const { value: model, options } = await spyCreate(() =>
    AutoModelForCausalLM.from_pretrained(name, {
      local_files_only: true,
      dtype: 'fp32',
      device: 'cpu',
      session_options: sessionOptions,
    }),
  );
  result.loadMs = performance.now() - t0;
  result.rssAfterLoadMb = rssMb();
  result.sessionOptions = options;
  const sessions = (model as unknown as { sessions: Record<string, Runnable> }).sessions;
  const session = sessions.model;
  if (!session) throw new Error(`transformers.js loaded no 'model' session (has ${Object.keys(sessions).join(', ')})`);
  const timer = timeRuns(session);

  const prompt = task.promptIds;
  const encoded = tokenizer.encode(task.promptText, { add_special_tokens: false }) as number[];
  result.tokenizerMatch = same(encoded.slice(0, prompt.length), prompt);

  const idsT = (xs: number[]) => new Tensor('int64', BigInt64Array.from(xs.map(BigInt)), [1, xs.length]);
  const ones = (n: number) => new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]);
  // eos_token_id: null drops the end-of-sequence stopping criterion: exactly max_new_tokens, like Tandem's ignore_eos.
  if (task.ignoreEos) result.notes.push('ignore_eos: generate(..., eos_token_id: null)');
  const gen = (max: number, streamer?: InstanceType<typeof BaseStreamer>) =>
    model.generate({
      input_ids: idsT(prompt),
      attention_mask: ones(prompt.length),
      max_new_tokens: max,
      do_sample: false,
      // Plain greedy on both sides: generation_config.json's repetition_penalty (chat models) is a serving default,
      // which Tandem's engine applies only when a request asks for it.
      repetition_penalty: 1,
      ...(task.ignoreEos ? { eos_token_id: null } : {}),
      ...(streamer ? { streamer } : {}),
    } as Parameters<typeof model.generate>[0]);

  /** Timestamps each generated token; generate() first puts the prompt itself, which is skipped. */
  class Stamps extends BaseStreamer {
    stamps: number[] = [];
    ortAt: number[] = [];
    ids: number[] = [];
    private sawPrompt = false;
    override put(value: bigint[][]): void {
      if (!this.sawPrompt) {
        this.sawPrompt = true;
        return;
      }
      this.stamps.push(performance.now());
      this.ortAt.push(timer.ms);
      this.ids.push(Number(value[0]?.[0]));
    }
    override end(): void {}
  }

  const side: Side = {
    result,
    timer,
    async prefill() {
      const s = performance.now();
      await model.forward({ input_ids: idsT(prompt), attention_mask: ones(prompt.length) });
      return performance.now() - s;
    },
    async decode() {
      const st = new Stamps();
      const start = performance.now();
      const out = (await gen(task.newTokens, st)) as unknown as { tolist(): bigint[][] };
      const ids = (out.tolist()[0] ?? []).slice(prompt.length).map(Number);
      if (!same(ids, st.ids) && !result.notes.includes('streamer ids differ from the returned sequence'))
        result.notes.push('streamer ids differ from the returned sequence');
      return { run: decodeRun(start, st.stamps, st.ortAt), ids };
    },
    async warm() {
      await gen(8);
    },
  };
  return { side, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Runs `f` under the V8 sampling profiler when `dir` is set, writing `<dir>/<name>.cpuprofile`. */
async function profiled<T>(dir: string | undefined, name: string, f: () => Promise<T>): Promise<T> {
  if (!dir) return f();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 250 });
  await session.post('Profiler.start');
  try {
    return await f();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
}

/** Feeds for one decode step of `batch` rows after `past` cached positions (zeros: only the shapes matter). */
function stepFeeds(session: ort.InferenceSession, batch: number, past: number): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', new BigInt64Array(batch).fill(5n), [batch, 1]),
  };
  if (session.inputNames.includes('attention_mask'))
    f.attention_mask = new ort.Tensor('int64', new BigInt64Array(batch * (past + 1)).fill(1n), [batch, past + 1]);
  if (session.inputNames.includes('position_ids'))
    f.position_ids = new ort.Tensor('int64', new BigInt64Array(batch).fill(BigInt(past)), [batch, 1]);
  for (const name of session.inputNames.filter((n) => n.startsWith('past_key_values.'))) {
    const meta = session.inputMetadata.find((m) => m.name === name);
    const shape = meta?.isTensor ? meta.shape : [];
    const heads = typeof shape[1] === 'number' ? shape[1] : 1;
    const dim = typeof shape[3] === 'number' ? shape[3] : 1;
    f[name] = new ort.Tensor('float32', new Float32Array(batch * heads * past * dim), [batch, heads, past, dim]);
  }
  return f;
}

/** onnxruntime's own profiler over batch-1 decode steps: where the time inside session.run goes, by operator. */
async function ortOpProfile(task: ModelTask, options: Record<string, unknown>, dir: string): Promise<OrtOpProfile> {
  mkdirSync(dir, { recursive: true });
  const prefix = join(dir, 'ort');
  const session = await ort.InferenceSession.create(join(task.dir, 'model.onnx'), {
    ...options,
    enableProfiling: true,
    profileFilePrefix: prefix,
  });
  const past = task.promptIds.length + (task.newTokens >> 1);
  const feeds = stepFeeds(session, 1, past);
  const runs = 200;
  for (let i = 0; i < runs; i++) await session.run(feeds);
  session.endProfiling();
  await session.release();
  const file = readdirSync(dir)
    .filter((f) => f.startsWith('ort') && f.endsWith('.json'))
    .sort()
    .at(-1);
  if (!file) throw new Error(`onnxruntime wrote no profile in ${dir}`);
  type Ev = { cat?: string; name?: string; dur?: number; args?: { op_name?: string } };
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Ev[];
  let n = 0;
  let total = 0;
  const byOp = new Map<string, { us: number; nodes: Set<string> }>();
  const byNode = new Map<string, number>();
  for (const e of events) {
    if (e.cat === 'Session' && e.name === 'model_run') {
      n++;
      total += e.dur ?? 0;
    }
    if (e.cat === 'Node' && e.name?.endsWith('_kernel_time')) {
      const node = e.name.slice(0, -'_kernel_time'.length);
      const op = e.args?.op_name ?? '?';
      const o = byOp.get(op) ?? { us: 0, nodes: new Set<string>() };
      o.us += e.dur ?? 0;
      o.nodes.add(node);
      byOp.set(op, o);
      byNode.set(node, (byNode.get(node) ?? 0) + (e.dur ?? 0));
    }
  }
  const kernels = [...byOp.values()].reduce((a, o) => a + o.us, 0) || 1;
  return {
    runs: n,
    pastLength: past,
    runUsProfiled: total / (n || 1),
    nodes: byNode.size,
    byOp: [...byOp.entries()]
      .sort((a, b) => b[1].us - a[1].us)
      .map(([op, o]) => ({ op, nodes: o.nodes.size, usPerRun: o.us / (n || 1), pct: (100 * o.us) / kernels })),
    topNodes: [...byNode.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([node, us]) => ({ node, usPerRun: us / (n || 1) })),
  };
}

/**
 * session.run time of a decode step (batch 1 and 8) under a few session-option variants, interleaved round by round:
 * what Tandem's options cost or save on this machine.
 */
async function sessionVariants(task: ModelTask, options: Record<string, unknown>): Promise<VariantTiming[]> {
  const variants: [string, Record<string, unknown>][] = [
    ["Tandem's options", options],
    ['intraOpNumThreads: 1', { ...options, intraOpNumThreads: 1 }],
    ['intra-op spinning off', { ...options, extra: { session: { intra_op: { allow_spinning: '0' } } } }],
  ];
  const sessions = await Promise.all(
    variants.map(([, o]) => ort.InferenceSession.create(join(task.dir, 'model.onnx'), o)),
  );
  const past = task.promptIds.length + (task.newTokens >> 1);
  const out: VariantTiming[] = [];
  for (const batch of [1, 8]) {
    const feeds = stepFeeds(sessions[0] as ort.InferenceSession, batch, past);
    for (const s of sessions) for (let i = 0; i < 10; i++) await s.run(feeds);
    const rounds: number[][] = variants.map(() => []);
    for (let r = 0; r < 6; r++) {
      for (const [v, s] of sessions.entries()) {
        const t: number[] = [];
        for (let i = 0; i < 30; i++) {
          const t0 = performance.now();
          await s.run(feeds);
          t.push(performance.now() - t0);
        }
        (rounds[v] as number[]).push(median(t));
      }
    }
    for (const [v, [name]] of variants.entries())
      out.push({ variant: name, batch, msPerStep: median(rounds[v] as number[]), rounds: rounds[v] as number[] });
  }
  for (const s of sessions) await s.release();
  return out;
}

/** Median microseconds per call of `f` (5 batches of `n` calls after a warm-up batch). */
function usPerCall(f: (i: number) => unknown, n = 2000): number {
  let sink: unknown;
  for (let i = 0; i < n; i++) sink = f(i);
  const batches: number[] = [];
  for (let b = 0; b < 5; b++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sink = f(i);
    batches.push(((performance.now() - t0) * 1000) / n);
  }
  if (sink === Symbol.for('never')) console.log(sink);
  return median(batches);
}

/**
 * The pieces of Tandem's per-token work outside session.run, each timed alone with the real model's logits and
 * tokenizer (what engine.ts/causalLM.ts do per step, re-enacted with the same src/slm functions). Pieces whose
 * module or export is gone are skipped.
 */
async function anatomy(task: ModelTask): Promise<AnatomyRow[]> {
  const { CausalLM } = await import('../../src/slm/causalLM.js');
  const sampling = await import('../../src/slm/sampling.js');
  const session = await import('../../src/slm/session.js');
  const lm = await CausalLM.load(task.dir, { threads: task.threads });
  const prompt = task.promptIds;
  const out = await lm.forward({
    ids: [prompt],
    mask: [prompt.map(() => 1)],
    positions: [prompt.map((_, i) => i)],
    past: lm.emptyCache(1),
  });
  const vocab = out.vocab;
  const row = out.logits.slice((prompt.length - 1) * vocab, prompt.length * vocab);
  const lp = sampling.logSoftmax(row, 0, vocab);
  const id = sampling.argmax(lp);
  const past = prompt.length + (task.newTokens >> 1);
  const mask = Array.from({ length: past + 1 }, () => 1);
  const rows: AnatomyRow[] = [];
  const add = (piece: string, where: string, f: (i: number) => unknown, n?: number) => {
    try {
      rows.push({ piece, where, us: usPerCall(f, n) });
    } catch (err) {
      rows.push({ piece: `${piece} (failed: ${(err as Error).message.slice(0, 80)})`, where, us: Number.NaN });
    }
  };
  add(`logSoftmax over the vocabulary (${vocab})`, 'sampling.ts logSoftmax', () => sampling.logSoftmax(row, 0, vocab));
  add('greedy pick: argmax over the log-probs', 'sampling.ts sample/argmax', () =>
    sampling.sample(lp, { temperature: 0, topK: 0, topP: 1 }, Math.random),
  );
  add('argmax over the raw logits (no logSoftmax)', 'for comparison', () => sampling.argmax(row));
  add('max + log-sum-exp only (no output array)', 'for comparison', () => {
    let m = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < vocab; i++) if ((row[i] as number) > m) m = row[i] as number;
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp((row[i] as number) - m);
    return m + Math.log(sum);
  });
  add('tokenText(id)', 'tokenizer.ts', (i) => lm.tokenizer.tokenText((id + i) % vocab));
  add('tokenBytes(id)', 'tokenizer.ts', (i) => lm.tokenizer.tokenBytes((id + i) % vocab));
  try {
    const { Detokenizer } = await import('../../src/slm/detokenizer.js');
    add(
      'Detokenizer.push(id) (64-token generations)',
      'detokenizer.ts',
      (() => {
        let d = new Detokenizer(lm.tokenizer);
        return (i: number) => {
          if (i % 64 === 0) d = new Detokenizer(lm.tokenizer);
          return d.push((id + i) % vocab);
        };
      })(),
    );
  } catch {
    // no detokenizer module in this tree
  }
  add('tokenizer.decode(all ids so far), 32 ids', 'tokenizer.ts decode (the pre-Detokenizer way)', () =>
    lm.tokenizer.decode(prompt.slice(0, 32)),
  );
  try {
    const { StopMatcher } = await import('../../src/slm/stop.js');
    const text = lm.tokenizer.decode(prompt);
    add(
      'StopMatcher.push(text), no stop strings',
      'stop.ts',
      (() => {
        const m = new StopMatcher([]);
        return (i: number) => m.push(text.slice(0, 40 + (i % 200)));
      })(),
    );
  } catch {
    // no stop module
  }
  add(
    `mask bookkeeping: mask.map(m => [...m, 1]) + flat(), length ${past}`,
    'engine.ts step + causalLM.ts forward',
    () => {
      const next = [mask].map((m) => [...m, 1]); // engine.ts step
      return next.flat(); // causalLM.ts forward
    },
  );
  add(`int64(mask) of length ${past + 1}`, 'session.ts int64', () => session.int64([mask], [1, past + 1]));
  add('int64(ids) + int64(positions), batch 1', 'session.ts int64', () => {
    session.int64([[id]], [1, 1]);
    return session.int64([[past]], [1, 1]);
  });
  const kv = lm.emptyCache(1);
  add(`${2 * lm.layers} float32 KV tensor wrappers`, 'session.ts float32 / causalLM.ts forward', () => {
    const t: unknown[] = [];
    for (let l = 0; l < 2 * lm.layers; l++)
      t.push(session.float32(kv.keys[0] as Float32Array, [1, lm.kvHeads, 0, lm.headDim]));
    return t;
  });
  const fwd = {
    ids: [[id]],
    mask: [mask],
    positions: [[past]],
    past: {
      ...kv,
      length: past,
      keys: kv.keys.map(() => new Float32Array(lm.kvHeads * past * lm.headDim)),
      values: kv.values.map(() => new Float32Array(lm.kvHeads * past * lm.headDim)),
    },
  };
  const t: number[] = [];
  for (let i = 0; i < 60; i++) {
    const t0 = performance.now();
    await lm.forward(fwd);
    t.push((performance.now() - t0) * 1000);
  }
  rows.push({
    piece: 'for scale: a whole lm.forward decode step (batch 1)',
    where: 'causalLM.ts forward',
    us: median(t),
  });
  await lm.release();
  return rows;
}

async function model(task: ModelTask): Promise<ModelResult> {
  const sides: Side[] = [];
  let concurrency: (() => Promise<Concurrency>) | undefined;
  let tandemOptions: Record<string, unknown> | undefined;
  const cleanups: (() => void)[] = [];
  for (const rt of task.runtimes) {
    if (rt === 'tandem') {
      const t = await loadTandem(task);
      sides.push(t.side);
      concurrency = t.concurrency;
      tandemOptions = t.side.result.sessionOptions;
    } else {
      const t = await loadTransformersJs(task, tandemOptions);
      sides.push(t.side);
      cleanups.push(t.cleanup);
    }
  }
  try {
    for (const s of sides) {
      await s.prefill();
      await s.warm();
    }
    // Alternate: A B, B A, A B, ...
    const order = (r: number) => (r % 2 === 0 ? sides : [...sides].reverse());
    // Each measurement is preceded by an untimed one of the same runtime: the two runtimes hold separate copies of the
    // weights, which do not fit the CPU caches together, so a run right after the other runtime's would start cold.
    // A server runs one runtime back to back; so does every measured run here.
    for (let r = 0; r < task.prefillReps; r++)
      for (const s of order(r)) {
        await s.prefill();
        s.result.prefillMs.push(await s.prefill());
      }
    await profiled(task.profileDir, 'decode-b1', async () => {
      for (let r = 0; r < task.decodeReps; r++) {
        for (const s of order(r)) {
          if (sides.length > 1) await s.warm();
          const { run, ids } = await s.decode();
          s.result.decode.push(run);
          if (r === 0) s.result.greedyIds = ids;
        }
      }
    });
    const tandem = sides.find((s) => s.result.runtime === 'tandem');
    const conc = concurrency;
    if (tandem && conc && task.concurrencyReps > 0 && task.batchIds.length)
      tandem.result.concurrency = await profiled(task.profileDir, 'concurrent', conc);
  } finally {
    for (const c of cleanups) c();
  }
  let ortOps: OrtOpProfile | undefined;
  let variants: VariantTiming[] | undefined;
  let pieces: AnatomyRow[] | undefined;
  if (task.profileDir && tandemOptions) {
    ortOps = await ortOpProfile(task, tandemOptions, join(task.profileDir, 'ort'));
    variants = await sessionVariants(task, tandemOptions);
    pieces = await anatomy(task);
  }
  return {
    pid: process.pid,
    rssEndMb: rssMb(),
    runtimes: Object.fromEntries(sides.map((s) => [s.result.runtime, s.result])),
    ortOps,
    variants,
    anatomy: pieces,
  };
}

async function main(): Promise<void> {
  const task = JSON.parse(process.argv[2] ?? '{}') as WorkerTask;
  const result = task.kind === 'bandwidth' ? await bandwidth(task) : await model(task);
  process.stdout.write(`${JSON.stringify({ result })}\n`);
}

// Only when run as a child (bench/slm.ts imports this module's types).
if (process.argv[1] && import.meta.filename === process.argv[1]) {
  let settled = false;
  // A promise that never settles (e.g. a generation the engine dropped) lets the event loop drain: say so, fail.
  process.on('exit', (code) => {
    if (!settled && code === 0) {
      process.stderr.write('slm worker: the event loop drained before the task finished (a promise never settled)\n');
      process.exitCode = 1;
    }
  });
  main().then(
    () => {
      settled = true;
      process.exit(0);
    },
    (err: unknown) => {
      settled = true;
      process.stderr.write(`slm worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
