import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { warp } from '../src/eft/distribution.js';
import { ModelSpecSchema } from '../src/proxy/config.js';
import { CausalLM, ContextLengthError } from '../src/slm/causalLM.js';
import { Classifier } from '../src/slm/classifier.js';
import { Detokenizer } from '../src/slm/detokenizer.js';
import { AbortedError, GenerationEngine, prefillGroups, QueueFullError } from '../src/slm/engine.js';
import { ModelError, readModelFolder } from '../src/slm/folder.js';
import { ModelRegistry, UnknownModelError } from '../src/slm/registry.js';
import { rng, type SamplingParams, sample } from '../src/slm/sampling.js';
import { TextTokenizer } from '../src/slm/tokenizer.js';
import { CAUSAL_FAMILY, CLASSIFIER, modelDir } from './support/models.js';

interface Parity {
  tolerance: number;
  full: { input_ids: number[]; position_ids: number[]; last_logits: number[]; first64_per_position: number[][] };
  cached: {
    prefix_ids: number[];
    prefix_last_logits: number[];
    steps: { input_ids: number[]; position_ids: number[]; past_length: number; logits_first512: number[] }[];
  };
  batch_left_padded: {
    input_ids: number[][];
    attention_mask: number[][];
    position_ids: number[][];
    last_logits_first512: number[][];
  };
  greedy: { prompt_ids: number[]; new_ids: number[] };
}

function maxDiff(a: ArrayLike<number>, ref: number[]): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (ref[i] as number)));
  return m;
}

/** One sequence fed whole, from an empty cache, at positions 0..n-1. */
const promptPass = (lm: CausalLM, ids: number[]) =>
  lm.forward({ ids: [ids], mask: [ids.map(() => 1)], positions: [ids.map((_, i) => i)], past: lm.emptyCache(1) });

describe.each(CAUSAL_FAMILY)('%s', (name) => {
  let lm: CausalLM;
  let engine: GenerationEngine;
  let parity: Parity;
  beforeAll(async () => {
    parity = JSON.parse(readFileSync(join(modelDir(name), 'parity.json'), 'utf8')) as Parity;
    lm = await CausalLM.load(modelDir(name), { threads: 1 });
    engine = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0 });
  });
  afterAll(() => lm.release());

  test('parity with PyTorch without the KV cache (full prompt)', async () => {
    const ids = parity.full.input_ids;
    const out = await lm.forward({
      ids: [ids],
      mask: [ids.map(() => 1)],
      positions: [parity.full.position_ids],
      past: lm.emptyCache(1),
    });
    const V = out.vocab;
    expect(maxDiff(out.logits.subarray((ids.length - 1) * V, ids.length * V), parity.full.last_logits)).toBeLessThan(
      1e-4,
    );
    parity.full.first64_per_position.forEach((ref, t) => {
      expect(maxDiff(out.logits.subarray(t * V, t * V + 64), ref)).toBeLessThan(1e-4);
    });
  });

  test('parity with PyTorch with the KV cache, token by token', async () => {
    const prefix = parity.cached.prefix_ids;
    let out = await promptPass(lm, prefix);
    const V = out.vocab;
    expect(maxDiff(out.logits.subarray((prefix.length - 1) * V), parity.cached.prefix_last_logits)).toBeLessThan(1e-4);
    let past = out.present;
    for (const step of parity.cached.steps) {
      expect(past?.length).toBe(step.past_length);
      const len = (past?.length ?? 0) + 1;
      out = await lm.forward({
        ids: [step.input_ids],
        mask: [Array(len).fill(1)],
        positions: [step.position_ids],
        past,
      });
      expect(maxDiff(out.logits, step.logits_first512)).toBeLessThan(1e-4);
      past = out.present;
    }
  });

  test('parity on a left-padded batch', async () => {
    const b = parity.batch_left_padded;
    const out = await lm.forward({
      ids: b.input_ids,
      mask: b.attention_mask,
      positions: b.position_ids,
      past: lm.emptyCache(2),
    });
    const S = b.input_ids[0]?.length ?? 0;
    b.last_logits_first512.forEach((ref, row) => {
      const off = (row * S + S - 1) * out.vocab;
      expect(maxDiff(out.logits.subarray(off, off + 512), ref)).toBeLessThan(1e-4);
    });
  });

  test('greedy generation reproduces PyTorch greedy ids', async () => {
    const want = parity.greedy.new_ids;
    const r = await engine.generate(parity.greedy.prompt_ids, { maxTokens: want.length, temperature: 0 });
    const got = r.tokens.map((t) => t.id);
    // The engine stops at an end-of-sequence id; torch's reference may run on past it.
    expect(got).toEqual(want.slice(0, got.length));
    expect(got.length === want.length || lm.eos.has(want[got.length] as number)).toBe(true);
  });

  test('generate: concurrent requests are batched and give the same greedy text as one at a time', async () => {
    const prompts = ['The word harbour', 'In the beginning', 'Gold is', 'A fortune:', 'What does lamp mean?'].map((p) =>
      lm.tokenizer.encode(p),
    );
    const seq = [];
    // Chat models may end at once on a plain prompt: ignoreEos keeps every sequence in the batch for 12 steps.
    const opts = { maxTokens: 12, temperature: 0, ignoreEos: true, topLogprobs: 0 };
    for (const p of prompts) seq.push(await engine.generate(p, opts));
    const idle = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0 });
    const forward = vi.spyOn(lm, 'forward');
    const par = await Promise.all(prompts.map((p) => idle.generate(p, opts)));
    // Submitted in one tick to an idle engine, prefilled in one pass: one forward per generated token.
    expect(forward.mock.calls.map((c) => c[0].ids.length)).toEqual(Array(12).fill(prompts.length));
    forward.mockRestore();
    expect(par.map((r) => r.text)).toEqual(seq.map((r) => r.text));
    for (const r of seq) {
      expect(r.tokens.length).toBeGreaterThan(0);
      expect(r.tokens.length).toBeLessThanOrEqual(12);
      for (const t of r.tokens) expect(t.logprob).toBeLessThanOrEqual(0);
    }
  });

  test('prompts of very different lengths are prefilled in groups of similar length, with the same output', async () => {
    const prompts = [
      'Gold is',
      'In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.',
      'A lamp',
    ].map((p) => lm.tokenizer.encode(p));
    const opts = { maxTokens: 6, temperature: 0, ignoreEos: true };
    const want = [];
    for (const p of prompts) want.push(await engine.generate(p, opts));
    const idle = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 8, promptLookup: 0 });
    const forward = vi.spyOn(lm, 'forward');
    const got = await Promise.all(prompts.map((p) => idle.generate(p, opts)));
    const shapes = forward.mock.calls.map((c) => [c[0].ids.length, c[0].ids[0]?.length]);
    forward.mockRestore();
    const short = Math.max(prompts[0]?.length ?? 0, prompts[2]?.length ?? 0);
    // The two short prompts in one pass, the long one alone, then every step with all three.
    expect(shapes).toEqual([[2, short], [1, prompts[1]?.length], ...Array(5).fill([3, 1])]);
    expect(got.map((r) => r.tokens.map((t) => t.id))).toEqual(want.map((r) => r.tokens.map((t) => t.id)));
  });

  test('prompts prefilled in chunks (a small logits budget) generate exactly what one pass does', async () => {
    const chunked = new GenerationEngine(lm, {
      maxBatch: 8,
      queueLimit: 8,
      promptLookup: 0,
      prefillLogitsBudget: 3 * lm.tokenizer.vocabSize,
    });
    const prompts = ['In the beginning God created the heaven and the earth.', 'Gold', 'What does the word lamp mean?'];
    const opts = { maxTokens: 10, temperature: 0, ignoreEos: true, topLogprobs: 0 };
    const enc = prompts.map((p) => lm.tokenizer.encode(p));
    const want = await Promise.all(enc.map((p) => engine.generate(p, opts)));
    const got = await Promise.all(enc.map((p) => chunked.generate(p, opts)));
    expect(got.map((r) => r.tokens.map((t) => t.id))).toEqual(want.map((r) => r.tokens.map((t) => t.id)));
    for (const [i, r] of got.entries()) {
      for (const [j, t] of r.tokens.entries()) expect(t.logprob ?? 0).toBeCloseTo(want[i]?.tokens[j]?.logprob ?? 0, 3);
    }
  });

  test('prompt-lookup speculation returns exactly the greedy output, in fewer passes', async () => {
    const spec = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 8, promptLookup: 4 });
    const prompts = ['The word harbour', 'a person who is a person who is', 'In the beginning God created'];
    for (const text of prompts) {
      const p = lm.tokenizer.encode(text);
      for (const opts of [
        { maxTokens: 48, temperature: 0, ignoreEos: true },
        { maxTokens: 48, temperature: 0 },
        { maxTokens: 48, temperature: 0, ignoreEos: true, topLogprobs: 3 },
        { maxTokens: 48, temperature: 0, ignoreEos: true, repetitionPenalty: 1.3, frequencyPenalty: 0.5 },
      ]) {
        const want = await engine.generate(p, opts);
        let streamed = '';
        const got = await spec.generate(p, { ...opts, onText: (d) => (streamed += d) });
        expect(got.tokens.map((t) => t.id)).toEqual(want.tokens.map((t) => t.id));
        expect(got.text).toBe(want.text);
        expect(streamed).toBe(want.text);
        expect(got.finishReason).toBe(want.finishReason);
        for (const [i, t] of got.tokens.entries()) expect(t.logprob ?? 0).toBeCloseTo(want.tokens[i]?.logprob ?? 0, 4);
      }
    }
    expect(spec.drafted).toBeGreaterThan(0);
    expect(spec.acceptedDrafts).toBeGreaterThan(0);
  });

  test('sampling: same seed same text, stop strings cut and are not emitted, text streams in order', async () => {
    const p = lm.tokenizer.encode('Once upon a time');
    const sampled = { maxTokens: 20, temperature: 1, topP: 0.9, topK: 50, seed: 7, ignoreEos: true };
    const a = await engine.generate(p, sampled);
    const b = await engine.generate(p, sampled);
    expect(a.text).toBe(b.text);
    const c = await engine.generate(p, { ...sampled, seed: 8 });
    expect(c.text).not.toBe(a.text);
    const free = await engine.generate(p, { maxTokens: 30, temperature: 0, ignoreEos: true });
    const mid = Math.floor(free.text.length / 2);
    const stop = free.text.slice(mid, mid + 2);
    expect(stop.length).toBe(2);
    let streamed = '';
    const cut = await engine.generate(p, {
      maxTokens: 30,
      temperature: 0,
      ignoreEos: true,
      stop: [stop],
      onText: (d) => (streamed += d),
    });
    expect(cut.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    expect(cut.finishReason).toBe('stop');
    expect(streamed).toBe(cut.text);
  });

  test('nextTokenLogprobs is a full distribution; score agrees with it', async () => {
    const ids = lm.tokenizer.encode('In the beginning God created the');
    const lp = await lm.nextTokenLogprobs(ids);
    expect(lp.length).toBeGreaterThanOrEqual(lm.tokenizer.vocabSize - 1);
    const total = Array.from(lp).reduce((s, x) => s + Math.exp(x), 0);
    expect(total).toBeCloseTo(1, 4);
    const next = 42;
    const scored = await lm.score(ids, [next]);
    expect(scored.logprobs.at(-1)).toBeCloseTo(lp[next] as number, 4);
    expect(scored.logprobs).toHaveLength(ids.length);
    // Scored in chunks of 3 positions through the cache: the same numbers, and the same alternatives.
    const chunked = await lm.score(ids, [next], 5, 3 * lm.tokenizer.vocabSize);
    const whole = await lm.score(ids, [next], 5);
    for (const [i, lp] of whole.logprobs.entries()) expect(chunked.logprobs[i]).toBeCloseTo(lp, 4);
    expect(chunked.top.map((t) => t.map((x) => x.id))).toEqual(whole.top.map((t) => t.map((x) => x.id)));
    expect(whole.top[0]).toHaveLength(5);
  });

  test("the direct native run gives exactly the public InferenceSession's outputs", async () => {
    const viaPublic = await CausalLM.load(modelDir(name), { threads: 1, direct: false });
    try {
      const ids = parity.full.input_ids;
      const input = { ids: [ids], mask: [ids.map(() => 1)], positions: [ids.map((_, i) => i)] };
      const a = await lm.forward({ ...input, past: lm.emptyCache(1) });
      const b = await viaPublic.forward({ ...input, past: viaPublic.emptyCache(1) });
      expect(a.logits).toEqual(b.logits);
      expect(a.present).toEqual(b.present);
      const step = { ids: [[5]], mask: [[...ids.map(() => 1), 1]], positions: [[ids.length]] };
      const c = await lm.forward({ ...step, past: a.present });
      const d = await viaPublic.forward({ ...step, past: b.present });
      expect(c.logits).toEqual(d.logits);
    } finally {
      await viaPublic.release();
    }
  });

  test('timers and I/O keep running while a long generation computes', async () => {
    // Graphs run synchronously on the main thread; the session yields to the event loop every few milliseconds.
    let pieces = 0;
    const seen: number[] = [];
    const tick = setInterval(() => seen.push(pieces), 2);
    const r = await engine.generate(lm.tokenizer.encode('Tell me'), {
      maxTokens: 240,
      temperature: 0,
      ignoreEos: true,
      onText: () => pieces++,
    });
    clearInterval(tick);
    expect(r.tokens).toHaveLength(240);
    expect(seen.filter((n) => n > 0 && n < pieces).length).toBeGreaterThan(2);
  });

  test('cancellation, queue limit, context limit and failures', async () => {
    const p = lm.tokenizer.encode('Tell me');
    const ctrl = new AbortController();
    let pieces = 0;
    const run = engine.generate(p, {
      maxTokens: 200,
      temperature: 0,
      ignoreEos: true,
      signal: ctrl.signal,
      onText: () => {
        if (++pieces === 3) ctrl.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(AbortedError);
    expect(pieces).toBeLessThan(10);
    const small = new GenerationEngine(lm, { maxBatch: 2, queueLimit: 2, promptLookup: 0 });
    const many = Array.from({ length: 12 }, () =>
      small.generate(p, { maxTokens: 2, temperature: 0 }).catch((e: unknown) => e),
    );
    const results = await Promise.all(many);
    expect(results.filter((r) => r instanceof QueueFullError).length).toBeGreaterThan(0);
    expect(results.filter((r) => !(r instanceof Error)).length).toBeGreaterThan(0);
    await expect(engine.generate(Array(lm.contextLength).fill(5), { maxTokens: 1 })).rejects.toBeInstanceOf(
      ContextLengthError,
    );
    const full = await engine.generate(p, { maxTokens: 40, temperature: 0, ignoreEos: true });
    expect(full.tokens).toHaveLength(40);
    expect(full.finishReason).toBe('length');
    // A forward pass that fails (an id outside the vocabulary) fails its requests instead of hanging them.
    await expect(engine.generate([lm.tokenizer.vocabSize + 1000], { maxTokens: 2 })).rejects.toThrow();
    // The engine still works afterwards.
    expect((await engine.generate(p, { maxTokens: 3, temperature: 0, ignoreEos: true })).tokens.length).toBe(3);
  });
});

describe('a decoder exported without a KV cache', () => {
  test('matches PyTorch logits and greedy ids; batched generation too', async () => {
    const dir = join('test', 'fixtures', 'tiny-nocache');
    const par = JSON.parse(readFileSync(join(dir, 'parity.json'), 'utf8')) as {
      prompt_ids: number[];
      last_logits: number[];
      greedy_ids: number[];
    };
    const lm = await CausalLM.load(dir, { threads: 1 });
    expect(lm.hasCache).toBe(false);
    const lp = await lm.nextTokenLogprobs(par.prompt_ids);
    const out = await lm.forward({
      ids: [par.prompt_ids],
      mask: [par.prompt_ids.map(() => 1)],
      positions: [par.prompt_ids.map((_, i) => i)],
      past: null,
    });
    expect(maxDiff(out.logits.subarray((par.prompt_ids.length - 1) * out.vocab), par.last_logits)).toBeLessThan(1e-4);
    expect(lp.length).toBe(out.vocab);
    const engine = new GenerationEngine(lm, { maxBatch: 4, queueLimit: 8, promptLookup: 0 });
    const want = par.greedy_ids.filter((id) => !lm.eos.has(id));
    const [a, b] = await Promise.all([
      engine.generate(par.prompt_ids, { maxTokens: want.length, temperature: 0 }),
      engine.generate(par.prompt_ids.slice(3), { maxTokens: 5, temperature: 0 }),
    ]);
    expect(a?.tokens.map((t) => t.id)).toEqual(want);
    expect(b?.tokens.length).toBeGreaterThan(0);
    await lm.release();
  });
});

describe("Optimum's merged decoder (decoder_model_merged.onnx, use_cache_branch)", () => {
  test('its no-past branch matches PyTorch, its with-past branch the same weights without a cache', async () => {
    const dir = join('test', 'fixtures', 'tiny-merged');
    const par = JSON.parse(readFileSync(join(dir, 'parity.json'), 'utf8')) as {
      tolerance: number;
      prompt_ids: number[];
      last_logits: number[];
      greedy_new_ids: number[];
    };
    const merged = await CausalLM.load(dir, { threads: 1 });
    // The same weights exported without a cache (recipes/export_merged.py rebuilt them from it).
    const plain = await CausalLM.load(join('test', 'fixtures', 'tiny-nocache'), { threads: 1 });
    try {
      expect(readModelFolder(dir).onnxPath.endsWith('decoder_model_merged.onnx')).toBe(true);
      expect(merged.hasCache).toBe(true);
      const ids = par.prompt_ids;
      // Prompt with an empty cache: use_cache_branch false, the branch that ignores the past passed in.
      const first = await promptPass(merged, ids);
      const V = first.vocab;
      expect(maxDiff(first.logits.subarray((ids.length - 1) * V, ids.length * V), par.last_logits)).toBeLessThan(
        par.tolerance,
      );
      // Steps on top of the cache: use_cache_branch true; each equals the no-cache graph run on the whole sequence.
      let past = first.present;
      const seq = [...ids];
      for (const next of [7, 300, 2048]) {
        const step = await merged.forward({
          ids: [[next]],
          mask: [[...seq, next].map(() => 1)],
          positions: [[seq.length]],
          past,
        });
        seq.push(next);
        const full = await plain.forward({
          ids: [seq],
          mask: [seq.map(() => 1)],
          positions: [seq.map((_, i) => i)],
          past: null,
        });
        expect(maxDiff(step.logits, Array.from(full.logits.subarray((seq.length - 1) * V)))).toBeLessThan(1e-4);
        past = step.present;
      }
      const engine = new GenerationEngine(merged, { maxBatch: 4, queueLimit: 8, promptLookup: 0 });
      const want = par.greedy_new_ids.filter((id) => !merged.eos.has(id));
      const got = await engine.generate(ids, { maxTokens: want.length, temperature: 0 });
      expect(got.tokens.map((t) => t.id)).toEqual(want);
    } finally {
      await merged.release();
      await plain.release();
    }
  });
});

describe('classifier', () => {
  let c: Classifier;
  beforeAll(async () => {
    c = await Classifier.load(modelDir(CLASSIFIER), { threads: 1 });
  });
  afterAll(() => c.release());

  test('classifies texts by source, in a batch, with probabilities', async () => {
    const out = await c.classify([
      'And God said, Let there be light: and there was light.',
      'Hydrogen: symbol H, atomic number 1, atomic weight 1.008.',
      'the act of moving something from one place to another',
    ]);
    expect(out).toHaveLength(3);
    for (const r of out) {
      const sum = Object.values(r.scores).reduce((a, b) => a + b, 0);
      expect(sum).toBeCloseTo(1, 4);
      expect(Object.keys(r.scores)).toEqual(c.labels);
    }
    expect(out[0]?.label).toBe('bible');
    expect(out[1]?.label).toBe('elements');
  });

  test('parity with PyTorch, one by one and as a right-padded batch', async () => {
    const par = JSON.parse(readFileSync(join(modelDir(CLASSIFIER), 'parity.json'), 'utf8')) as {
      single: { text: string; logits: number[]; label: string }[];
      batch: { texts: string[]; logits: number[][] };
    };
    for (const one of par.single) {
      const [row] = await c.logits([one.text]);
      expect(maxDiff(row as Float32Array, one.logits)).toBeLessThan(1e-4);
      expect((await c.classify([one.text]))[0]?.label).toBe(one.label);
    }
    const rows = await c.logits(par.batch.texts);
    for (const [i, row] of rows.entries()) expect(maxDiff(row, par.batch.logits[i] as number[])).toBeLessThan(1e-4);
  });

  test('concurrent calls share runs and get exactly their own logits', async () => {
    const texts = [
      'And God said, Let there be light: and there was light.',
      'Hydrogen: symbol H, atomic number 1, atomic weight 1.008.',
      'the act of moving something from one place to another',
      'A fool and his money are soon parted.',
      'x',
      'abandon (v): forsake, leave behind; give up with the intent of never claiming again. '.repeat(3),
    ];
    const alone: Float32Array[] = [];
    for (const t of texts) alone.push(...(await c.logitsOfIds(c.windows(t))));
    const before = c.runs;
    const together = await Promise.all(texts.map((t) => c.logitsOfIds(c.windows(t))));
    expect(c.runs - before).toBeLessThan(texts.length);
    together.forEach(([row], i) => {
      expect(maxDiff(row as Float32Array, Array.from(alone[i] as Float32Array))).toBeLessThan(1e-5);
    });
  });

  test('windows cover every token of a long text, overlapping by a quarter, each within the limit', async () => {
    const text = readFileSync('recipes/eval/chat-heldout.jsonl', 'utf8').slice(0, 20_000);
    const all = new TextTokenizer(readModelFolder(modelDir(CLASSIFIER))).encode(text);
    for (const size of [c.maxLength, 40]) {
      const ws = c.windows(text, size);
      const step = size - Math.floor(size / 4);
      expect(ws.length).toBe(Math.ceil((all.length - size) / step) + 1);
      ws.forEach((w, i) => {
        expect(w.length).toBeLessThanOrEqual(size);
        expect(w).toEqual(all.slice(i * step, i * step + size));
      });
      expect(ws.at(-1)?.at(-1)).toBe(all.at(-1));
    }
    // Rows of ids classify like the same text: one window is the whole short text.
    const short = 'And God said, Let there be light: and there was light.';
    const [byText] = await c.logits([short]);
    const [byIds] = await c.logitsOfIds(c.windows(short));
    expect(maxDiff(byIds as Float32Array, Array.from(byText as Float32Array))).toBeLessThan(1e-6);
    await expect(c.logitsOfIds([all.slice(0, c.maxLength + 1)])).rejects.toThrow(/at most 128 tokens/);
  });
});

describe('prefix cache', () => {
  let lm: CausalLM;
  beforeAll(async () => {
    lm = await CausalLM.load(modelDir('tandem-large-chat'), { threads: 1 });
  });
  afterAll(() => lm.release());

  test('prompts that extend a finished sequence are prefilled past it and generate exactly what a cold engine does', async () => {
    const cold = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0 });
    const warm = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0, prefixCacheBytes: 2 ** 24 });
    const opts = { maxTokens: 12, temperature: 0 };
    const enc = (t: string) => lm.tokenizer.encode(t);
    const firsts = [
      enc('<|im_start|>user\nWhat does the word lamp mean?<|im_end|>\n<|im_start|>assistant\n'),
      enc('<|im_start|>user\nWhat does the word river mean? Say it simply.<|im_end|>\n<|im_start|>assistant\n'),
    ];
    const turn1 = await Promise.all(firsts.map((p) => warm.generate(p, opts)));
    expect(warm.totals.cachedPromptTokens).toBe(0);
    // Next turns: each first prompt, its answer, and a new question; plus an unrelated cold prompt in the same batch.
    const more = enc('<|im_end|>\n<|im_start|>user\nAnd another one?<|im_end|>\n<|im_start|>assistant\n');
    const next = [
      ...firsts.map((p, i) => [...p, ...(turn1[i]?.tokens.map((t) => t.id) ?? []), ...more]),
      enc('In the beginning God created the heaven and the earth.'),
    ];
    const prefilledBefore = warm.totals.promptTokens;
    const got = await Promise.all(next.map((p) => warm.generate(p, opts)));
    const want = await Promise.all(next.map((p) => cold.generate(p, opts)));
    expect(got.map((r) => r.tokens.map((t) => t.id))).toEqual(want.map((r) => r.tokens.map((t) => t.id)));
    // Both follow-ups reused at least their first prompt; only the rest was prefilled.
    const reused = warm.totals.cachedPromptTokens;
    expect(reused).toBeGreaterThanOrEqual((firsts[0]?.length ?? 0) + (firsts[1]?.length ?? 0));
    const total = next.reduce((a, p) => a + p.length, 0);
    expect(warm.totals.promptTokens - prefilledBefore).toBe(total - reused);
    // Asking for the prompt's own scores needs every position: such a request never starts from the cache.
    const scored = await warm.generate(next[0] as number[], { ...opts, promptLogprobs: 0 });
    expect(warm.totals.cachedPromptTokens).toBe(reused);
    expect(scored.promptScores).toHaveLength((next[0]?.length ?? 0) - 1);
  });

  test("a scored prompt that extends a scored one starts from that one's cache and scores it as from scratch", async () => {
    const cold = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0 });
    const warm = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0, prefixCacheBytes: 2 ** 24 });
    const enc = (t: string) => lm.tokenizer.encode(t);
    // A scoring client's calls, as speculative EFT sends them to a remote large model: each one the last one plus a
    // few more tokens, echoed with logprobs.
    const first = enc(
      'In the beginning God created the heaven and the earth. And the earth was without form, and void',
    );
    const second = [...first, ...enc(', and darkness was upon the face of the deep.')];
    const opts = (k: number) => ({ maxTokens: 1, temperature: 0, promptLogprobs: k });
    await warm.generate(first, opts(5));
    expect(warm.totals.cachedPromptTokens).toBe(0);
    const got = await warm.generate(second, opts(3));
    // Every position but the last of the first prompt came from the cache: the last one predicts the first new token.
    expect(warm.totals.cachedPromptTokens).toBe(first.length - 1);
    const want = await cold.generate(second, opts(3));
    expect(got.tokens.map((t) => t.id)).toEqual(want.tokens.map((t) => t.id));
    const rows = got.promptScores ?? [];
    expect(rows).toHaveLength(second.length - 1);
    rows.forEach((r, i) => {
      const w = want.promptScores?.[i];
      expect(Math.abs(r.logprob - (w?.logprob ?? Number.NaN))).toBeLessThan(1e-4);
      expect(r.top.map((t) => t.id)).toEqual(w?.top.map((t) => t.id));
      for (const [j, t] of r.top.entries())
        expect(Math.abs(t.logprob - (w?.top[j]?.logprob ?? Number.NaN))).toBeLessThan(1e-4);
    });
    // Scores kept with fewer alternatives than asked for cannot serve: that request is prefilled from scratch.
    const before = warm.totals.cachedPromptTokens;
    const wider = await warm.generate(second, opts(8));
    expect(warm.totals.cachedPromptTokens).toBe(before);
    expect(wider.promptScores?.[0]?.top).toHaveLength(8);
    // A call whose block departs from the cached one (a rejected draft) reuses the shared part but its last position,
    // whose score is of the cached token, not of this prompt's.
    const shared = first.length - 3;
    const third = [...first.slice(0, shared), ...enc(' yet light was not')];
    expect(third[shared]).not.toBe(second[shared]);
    const beforeThird = warm.totals.cachedPromptTokens;
    const got3 = await warm.generate(third, opts(3));
    expect(warm.totals.cachedPromptTokens - beforeThird).toBe(shared - 1);
    const want3 = await cold.generate(third, opts(3));
    expect(got3.promptScores?.map((r) => r.top.map((t) => t.id))).toEqual(
      want3.promptScores?.map((r) => r.top.map((t) => t.id)),
    );
    for (const [i, r] of (got3.promptScores ?? []).entries())
      expect(Math.abs(r.logprob - (want3.promptScores?.[i]?.logprob ?? Number.NaN))).toBeLessThan(1e-4);
  });
});

describe('KV budget', () => {
  test('sequences wait until the batch fits the budget, a lone one always runs, and the output is unchanged', async () => {
    const lm = await CausalLM.load(modelDir('tandem-small-chat'), { threads: 1 });
    try {
      const perToken = 2 * lm.layers * 2 * lm.kvHeads * lm.headDim * 4;
      const opts = { maxTokens: 8, temperature: 0, ignoreEos: true };
      const prompts = [
        'The lamp',
        'What is a river?',
        'In the beginning God created',
        'Gold',
        'A fortune cookie says',
      ].map((t) => lm.tokenizer.encode(t));
      const longest = Math.max(...prompts.map((p) => p.length)) + opts.maxTokens;
      const free = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0 });
      const want = await Promise.all(prompts.map((p) => free.generate(p, opts)));
      for (const [budget, most] of [
        [2 * longest * perToken, 2],
        [perToken, 1],
      ] as const) {
        const tight = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0, kvBudgetBytes: budget });
        const forward = vi.spyOn(lm, 'forward');
        const got = await Promise.all(prompts.map((p) => tight.generate(p, opts)));
        const decodeBatches = forward.mock.calls.filter((c) => c[0].ids[0]?.length === 1).map((c) => c[0].ids.length);
        forward.mockRestore();
        expect(Math.max(...decodeBatches)).toBe(most);
        expect(got.map((r) => r.tokens.map((t) => t.id))).toEqual(want.map((r) => r.tokens.map((t) => t.id)));
      }
    } finally {
      await lm.release();
    }
  });
});

describe('chunked prefill', () => {
  let lm: CausalLM;
  let running: number[];
  let long: number[];
  beforeAll(async () => {
    lm = await CausalLM.load(modelDir('tandem-large-chat'), { threads: 1 });
    running = lm.tokenizer.encode('In the beginning God created the heaven and the earth.');
    long = lm.tokenizer.encode(
      'And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God ' +
        'moved upon the face of the waters. And God said, Let there be light: and there was light. And God saw the ' +
        'light, that it was good: and God divided the light from the darkness. And God called the light Day, and ' +
        'the darkness he called Night. And the evening and the morning were the first day.',
    );
  });
  afterAll(() => lm.release());

  test('a long prompt is fed in chunks with decode steps of running sequences between them, and nothing changes', async () => {
    const opts = { maxTokens: 24, temperature: 0, ignoreEos: true };
    const chunk = 16;
    const chunks = Math.ceil(long.length / chunk);
    expect(chunks).toBeGreaterThanOrEqual(4);
    const plain = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0 });
    const want = [await plain.generate(running, opts), await plain.generate(long, opts)];

    const chunked = new GenerationEngine(lm, {
      maxBatch: 8,
      queueLimit: 32,
      promptLookup: 0,
      prefillChunkTokens: chunk,
    });
    const events: string[] = [];
    const forward = vi.spyOn(lm, 'forward');
    const first = chunked.generate(running, { ...opts, onText: (_d, t) => t && events.push('running') });
    // Submitted once the running sequence is decoding: its prefill must share the loop with it.
    await new Promise<void>((resolve) => {
      const poll = () => (events.length >= 2 ? resolve() : setImmediate(poll));
      poll();
    });
    const atSubmit = events.length;
    const second = chunked.generate(long, { ...opts, onText: (_d, t) => t && events.push('long') });
    const got = await Promise.all([first, second]);
    const widths = forward.mock.calls.map((c) => c[0].ids[0]?.length ?? 0);
    forward.mockRestore();

    expect(got.map((r) => r.tokens.map((t) => t.id))).toEqual(want.map((r) => r.tokens.map((t) => t.id)));
    // The long prompt went in `chunks` passes of at most `chunk` positions ...
    const prefills = widths.filter((w) => w > 1);
    expect(prefills.slice(1)).toEqual([...Array(chunks - 1).fill(chunk), long.length - (chunks - 1) * chunk]);
    // ... and the running sequence took a step between each two of them: a token per chunk boundary between the
    // long prompt's arrival and its first token (fed in one go, at most the step already under way).
    const during = events.slice(atSubmit, events.indexOf('long')).filter((e) => e === 'running').length;
    expect(during).toBeGreaterThanOrEqual(chunks - 1);
  });

  test('a prompt paused between chunks counts as active, and survives a failed decode step of the others', async () => {
    const opts = { maxTokens: 12, temperature: 0, ignoreEos: true };
    const want = await new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0 }).generate(long, opts);
    const engine = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0, prefillChunkTokens: 8 });
    let submitted = false;
    let longChunks = 0;
    let ran = 0;
    const loads: number[] = [];
    // Long enough to be still running through the long prompt's chunks, until its step fails.
    const first = engine.generate(running, {
      ...opts,
      maxTokens: 200,
      onText: (_d, t) => {
        if (!t) return;
        ran++;
        if (longChunks > 0) loads.push(engine.load.active);
      },
    });
    await new Promise<void>((resolve) => {
      const poll = () => (ran >= 2 ? resolve() : setImmediate(poll));
      poll();
    });
    // The first decode step after the long prompt's second chunk fails (one pass, once).
    const real = lm.forward.bind(lm);
    let failed = false;
    const forward = vi.spyOn(lm, 'forward').mockImplementation(async (input) => {
      const width = input.ids[0]?.length ?? 0;
      if (submitted && width > 1) longChunks++;
      else if (longChunks >= 2 && !failed) {
        failed = true;
        throw new Error('decode step failed');
      }
      return real(input);
    });
    submitted = true;
    const second = engine.generate(long, opts);
    const [a, b] = await Promise.allSettled([first, second]);
    forward.mockRestore();
    // Between the long prompt's chunks the running sequence stepped, and the engine counted both as active.
    expect(loads.length).toBeGreaterThan(0);
    expect(loads.every((n) => n === 2)).toBe(true);
    // Its failed step failed it; the paused prefill, not in that pass, went on to the same answer as alone.
    expect(failed).toBe(true);
    expect(a.status === 'rejected' && String(a.reason)).toBe('Error: decode step failed');
    expect(longChunks).toBe(Math.ceil(long.length / 8));
    expect(b.status === 'fulfilled' && b.value.tokens.map((t) => t.id)).toEqual(want.tokens.map((t) => t.id));
  });
  test('a prompt whose client goes away between chunks is fed no further', async () => {
    const opts = { maxTokens: 12, temperature: 0, ignoreEos: true };
    const engine = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 32, promptLookup: 0, prefillChunkTokens: 8 });
    let ran = 0;
    const first = engine.generate(running, { ...opts, maxTokens: 60, onText: (_d, t) => t && ran++ });
    await new Promise<void>((resolve) => {
      const poll = () => (ran >= 2 ? resolve() : setImmediate(poll));
      poll();
    });
    const client = new AbortController();
    const real = lm.forward.bind(lm);
    let chunks = 0;
    const forward = vi.spyOn(lm, 'forward').mockImplementation(async (input) => {
      const out = await real(input);
      if ((input.ids[0]?.length ?? 0) > 1 && ++chunks === 2) client.abort();
      return out;
    });
    const second = engine.generate(long, { ...opts, signal: client.signal });
    const [a, b] = await Promise.allSettled([first, second]);
    forward.mockRestore();
    expect(Math.ceil(long.length / 8)).toBeGreaterThan(4);
    expect(b.status === 'rejected' && b.reason).toBeInstanceOf(AbortedError);
    expect(chunks).toBe(2);
    expect(a.status === 'fulfilled' && a.value.tokens.length).toBe(60);
    expect(engine.load).toEqual({ active: 0, waiting: 0 });
  });
});

describe('min-p sampling', () => {
  // Relative to the most likely token: weights 1, 0.905, 0.0067, 0.0025 at temperature 1.
  const logits = Float32Array.from([0, -0.1, -5, -6]);
  const counts = (p: SamplingParams, n = 2000) => {
    const random = rng(5);
    const c = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) {
      const id = sample(logits, p, random);
      c[id] = (c[id] as number) + 1;
    }
    return c;
  };
  test('sample keeps only tokens at least min_p times as likely as the best, on every path', () => {
    for (const p of [
      { temperature: 1, topK: 0, topP: 1, minP: 0.5 },
      { temperature: 1, topK: 3, topP: 1, minP: 0.5 },
      { temperature: 1, topK: 0, topP: 0.999, minP: 0.5 },
    ]) {
      const c = counts(p);
      expect((c[2] as number) + (c[3] as number), JSON.stringify(p)).toBe(0);
      // The two kept share the mass in their own proportion (0.905 : 1), within sampling noise.
      expect((c[1] as number) / (c[0] as number)).toBeGreaterThan(0.75);
      expect((c[1] as number) / (c[0] as number)).toBeLessThan(1.1);
    }
    // Off, the unlikely tokens do come up; min_p 1 is greedy.
    const off = counts({ temperature: 1, topK: 0, topP: 1, minP: 0 }, 20_000);
    expect((off[2] as number) + (off[3] as number)).toBeGreaterThan(0);
    expect(counts({ temperature: 1, topK: 0, topP: 1, minP: 1 })).toEqual([2000, 0, 0, 0]);
  });

  test("EFT's explicit distribution applies the same floor, renormalised", () => {
    const probs = warp(logits, { temperature: 1, topK: 0, topP: 1, minP: 0.5 });
    expect(probs[2]).toBe(0);
    expect(probs[3]).toBe(0);
    expect((probs[0] as number) + (probs[1] as number)).toBeCloseTo(1, 12);
    expect((probs[1] as number) / (probs[0] as number)).toBeCloseTo(Math.exp(-0.1), 6);
  });
});

describe('prefill groups', () => {
  const cost = (lengths: number[], groups: number[][], pass: number) =>
    groups.reduce((c, g) => c + Math.max(...g.map((i) => lengths[i] as number)) * g.length + pass, 0);
  /** Every way to cut the sorted prompts into consecutive groups, the cheapest. */
  const brute = (lengths: number[], pass: number): number => {
    const sorted = [...lengths].sort((a, b) => a - b);
    let best = Number.POSITIVE_INFINITY;
    for (let mask = 0; mask < 2 ** Math.max(0, sorted.length - 1); mask++) {
      let c = 0;
      let start = 0;
      for (let i = 0; i < sorted.length; i++) {
        if (i === sorted.length - 1 || mask & (1 << i)) {
          c += (sorted[i] as number) * (i - start + 1) + pass;
          start = i + 1;
        }
      }
      best = Math.min(best, c);
    }
    return sorted.length ? best : 0;
  };

  test('short prompts are not padded to a long one; similar ones share a pass', () => {
    expect(prefillGroups([])).toEqual([]);
    expect(prefillGroups([5, 5, 5])).toEqual([[0, 1, 2]]);
    expect(prefillGroups([3, 60, 4])).toEqual([[0, 2], [1]]);
    expect(prefillGroups([3, 60, 4], 1000)).toEqual([[0, 2, 1]]);
  });

  test('the groups are the cheapest cut of the sorted prompts, and cover each prompt once', () => {
    const rand = rng(7);
    for (let t = 0; t < 300; t++) {
      const lengths = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => 1 + Math.floor(rand() * 200));
      const pass = Math.floor(rand() * 40);
      const groups = prefillGroups(lengths, pass);
      expect(groups.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
      expect(cost(lengths, groups, pass)).toBe(brute(lengths, pass));
    }
  });
});

describe('tokenizer', () => {
  // Chunk-wise encoding (TextTokenizer.encode's fast path) must give the library's ids on any text.
  const folder = readModelFolder(modelDir('tandem-large-base'));
  const ours = new TextTokenizer(folder);
  const lib = new Tokenizer(folder.tokenizerJson, folder.tokenizerConfig);
  const libIds = (t: string) => lib.encode(t, { add_special_tokens: false }).ids;

  test('streamed detokenizing, finished, equals a one-shot decode, also when the ids stop mid-character', () => {
    const ids = ours.encode('naïve café 🙂👍🏽 日本語 — “quoted” ok');
    let cutMidChar = 0;
    for (let n = 1; n <= ids.length; n++) {
      const head = ids.slice(0, n);
      const detok = new Detokenizer(ours);
      let streamed = '';
      for (const id of head) streamed = detok.push(id);
      const whole = ours.decode(head);
      if (whole.endsWith('\uFFFD')) {
        cutMidChar++;
        expect(streamed.endsWith('\uFFFD')).toBe(false); // held back while more bytes may come
      }
      expect(detok.finish()).toBe(whole);
    }
    expect(cutMidChar).toBeGreaterThan(0); // the text must really split characters across tokens
  });

  test('chunk-wise encoding equals the library on held-out chat text, edge cases and random strings', () => {
    const lines = readFileSync('recipes/eval/chat-heldout.jsonl', 'utf8').split('\n').filter(Boolean);
    const edge = [
      '',
      ' ',
      '   ',
      'a   b',
      'a \n\n b',
      '\t\tx',
      "don't you'll I'm we've they'd it's",
      "'S 'LL",
      'x  ',
      ' x',
      '123 4567 89.5e-3',
      'naïve café — “quotes” … ½',
      '日本語のテキスト',
      'emoji 👩‍👩‍👧 ok 🎉',
      'e\u0301 combining',
      'nbsp\u00a0here\u2003em space\u200bzero width',
      'tabs\tand\r\nCRLF',
      '<|im_start|>user\nhi<|im_end|>',
      'a<pad>b',
      '<|endoftext|>',
      '<|im_start',
      '[EMAIL_1] and [PHONE_1]',
    ];
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const alphabet = [...'abcXYZ019 \t\n\'".,!?-_()éß中😀\u00a0\u200b\u0301'];
    const random = Array.from({ length: 300 }, () =>
      Array.from({ length: 1 + Math.floor(rnd() * 60) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join(''),
    );
    const texts = [...lines.slice(0, 400), ...edge, ...random];
    let mismatches = 0;
    for (const t of texts) {
      // twice: the second time from the chunk memo
      for (let k = 0; k < 2; k++) if (ours.encode(t).join() !== libIds(t).join()) mismatches++;
    }
    expect(mismatches).toBe(0);
    expect(ours.encode(lines.join('\n')).length).toBeGreaterThan(10_000);
  });
});

describe('refusing bad model folders', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'tandem-models-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const copy = (name: string) => {
    const dir = join(tmp, `${name}-${Math.random().toString(36).slice(2)}`);
    cpSync(modelDir(name), dir, { recursive: true });
    return dir;
  };

  test('the graph may live under onnx/, as transformers.js exports have it', async () => {
    const dir = copy('tandem-small-chat');
    const { mkdirSync, renameSync } = await import('node:fs');
    mkdirSync(join(dir, 'onnx'));
    renameSync(join(dir, 'model.onnx'), join(dir, 'onnx', 'model.onnx'));
    const lm = await CausalLM.load(dir, { threads: 1 });
    const ref = await CausalLM.load(modelDir('tandem-small-chat'), { threads: 1 });
    const ids = lm.tokenizer.encode('What is gold?');
    expect(Array.from(await lm.nextTokenLogprobs(ids))).toEqual(Array.from(await ref.nextTokenLogprobs(ids)));
    await lm.release();
    await ref.release();
  });

  test('a missing file is named', async () => {
    const dir = copy('tandem-small-base');
    rmSync(join(dir, 'tokenizer.json'));
    await expect(CausalLM.load(dir)).rejects.toThrow(/missing tokenizer\.json/);
    const dir2 = copy('tandem-small-base');
    rmSync(join(dir2, 'model.onnx'));
    await expect(CausalLM.load(dir2)).rejects.toThrow(/missing ONNX graph/);
  });

  test('a corrupt graph is a clear error at load', async () => {
    const dir = copy('tandem-small-base');
    truncateSync(join(dir, 'model.onnx'), 1000);
    const err = await CausalLM.load(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toMatch(/model\.onnx could not be loaded by onnxruntime/);
  });

  test('unexpected tensor names are named', async () => {
    const dir = copy(CLASSIFIER);
    // A classifier's graph where a causal LM is expected: no logits over a vocabulary, extra token_type_ids.
    await expect(CausalLM.load(dir)).rejects.toThrow(/unexpected inputs: token_type_ids/);
    const cfg = join(dir, 'config.json');
    const c = JSON.parse(readFileSync(cfg, 'utf8'));
    delete c.id2label;
    writeFileSync(cfg, JSON.stringify(c));
    await expect(Classifier.load(dir)).rejects.toThrow(/no id2label/);
  });

  test('the registry knows the family, loads once, and names unknown models', async () => {
    const reg = new ModelRegistry();
    for (const n of [...CAUSAL_FAMILY, CLASSIFIER]) expect(reg.names()).toContain(n);
    expect(reg.kind(CLASSIFIER)).toBe('classifier');
    expect(reg.kind('tandem-small-chat')).toBe('causal');
    const [a, b] = await Promise.all([reg.causalLM('tandem-small-chat'), reg.causalLM('tandem-small-chat')]);
    expect(a.lm).toBe(b.lm);
    expect(() => reg.spec('no-such-model')).toThrow(UnknownModelError);
    await reg.close();
  });

  test("a configured model's engine settings reach its engine (prefillChunkTokens here)", async () => {
    const spec = ModelSpecSchema.parse({ path: modelDir('tandem-small-chat'), prefillChunkTokens: 8 });
    const reg = new ModelRegistry({ chunky: spec });
    try {
      const { lm, engine } = await reg.causalLM('chunky');
      const prompt = lm.tokenizer.encode(
        'In the beginning God created the heaven and the earth. And the earth was without form, and void.',
      );
      const forward = vi.spyOn(lm, 'forward');
      await engine.generate(prompt, { maxTokens: 2, temperature: 0, ignoreEos: true });
      const widths = forward.mock.calls.map((c) => c[0].ids[0]?.length ?? 0);
      forward.mockRestore();
      const passes = Math.ceil(prompt.length / 8);
      expect(passes).toBeGreaterThanOrEqual(3);
      // The prompt's passes come first (nothing else runs), then one decode step.
      expect(widths).toEqual([...Array(passes - 1).fill(8), prompt.length - 8 * (passes - 1), 1]);
    } finally {
      await reg.close();
    }
  });
});
