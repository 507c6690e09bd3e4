import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CausalLM } from '../src/slm/causalLM.js';
import { Classifier } from '../src/slm/classifier.js';
import { modelDir } from './support/models.js';

const SAFETY = 'tandem-safety-classifier';
const LABELS = ['S', 'H', 'V', 'HR', 'SH', 'S3', 'H2', 'V2'];

interface SafetyParity {
  tolerance: number;
  single: { text: string; input_ids: number[]; logits: number[]; truncated_to?: number }[];
  batch: { texts: string[]; logits: number[][] };
}

function maxDiff(a: ArrayLike<number>, ref: number[]): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (ref[i] as number)));
  return m;
}

describe(SAFETY, () => {
  let c: Classifier;
  let par: SafetyParity;
  const config = JSON.parse(readFileSync(join(modelDir(SAFETY), 'config.json'), 'utf8')) as {
    problem_type: string;
    max_position_embeddings: number;
    tandem_threshold: number;
    tandem_category_thresholds: Record<string, number>;
  };
  beforeAll(async () => {
    c = await Classifier.load(modelDir(SAFETY), { threads: 1 });
    par = JSON.parse(readFileSync(join(modelDir(SAFETY), 'parity.json'), 'utf8')) as SafetyParity;
  });
  afterAll(() => c.release());

  test('is a multi-label classifier over the 8 moderation categories with a threshold', () => {
    expect(c.labels).toEqual(LABELS);
    expect(c.multiLabel).toBe(true);
    expect(config.problem_type).toBe('multi_label_classification');
    expect(c.maxLength).toBe(config.max_position_embeddings);
    expect(config.tandem_threshold).toBeGreaterThan(0);
    expect(config.tandem_threshold).toBeLessThan(1);
    expect(Object.keys(config.tandem_category_thresholds)).toEqual(LABELS);
  });

  test('ORT logits match PyTorch (parity.json) within 1e-4, one by one', async () => {
    expect(par.tolerance).toBeLessThanOrEqual(1e-4);
    for (const one of par.single) {
      const [row] = await c.logits([one.text]);
      expect(row).toHaveLength(LABELS.length);
      expect(maxDiff(row as Float32Array, one.logits)).toBeLessThan(1e-4);
    }
    // the long fixture is over the limit: the Classifier truncates it exactly where the recipe did
    expect(par.single.some((s) => s.truncated_to === c.maxLength && s.input_ids.length === c.maxLength)).toBe(true);
  });

  test('ORT logits match PyTorch (parity.json) within 1e-4 as a right-padded batch', async () => {
    const rows = await c.logits(par.batch.texts);
    for (const [i, row] of rows.entries()) expect(maxDiff(row, par.batch.logits[i] as number[])).toBeLessThan(1e-4);
  });

  test('classify gives per-label sigmoids', async () => {
    const [out] = await c.classify(['How do I bake bread at home?']);
    expect(Object.keys(out?.scores ?? {})).toEqual(LABELS);
    for (const p of Object.values(out?.scores ?? {})) {
      expect(p).toBeGreaterThan(0);
      expect(p).toBeLessThan(1);
    }
  });
});

const GUARD = 'tandem-guard';

interface GuardParity {
  guard: {
    unsafe_first_token: number;
    safe_first_token: number;
    examples: {
      messages: { role: string; content: string }[];
      prompt: string;
      input_ids: number[];
      p_unsafe: number;
    }[];
  };
}

describe.skipIf(!existsSync(join(modelDir(GUARD), 'model.onnx')))(GUARD, () => {
  let lm: CausalLM;
  let par: GuardParity;
  beforeAll(async () => {
    lm = await CausalLM.load(modelDir(GUARD), { threads: 1 });
    par = JSON.parse(readFileSync(join(modelDir(GUARD), 'parity.json'), 'utf8')) as GuardParity;
  });
  afterAll(() => lm.release());

  test('the Llama Guard chat template renders and tokenizes as in the recipe', () => {
    for (const ex of par.guard.examples) {
      const text = lm.tokenizer.applyChatTemplate(ex.messages, true);
      expect(text).toBe(ex.prompt);
      expect(text).toContain('<BEGIN UNSAFE CONTENT CATEGORIES>');
      expect(lm.tokenizer.encode(text)).toEqual(ex.input_ids);
    }
  });

  test('P(unsafe) from the first answer token matches PyTorch within 1e-4', async () => {
    const { unsafe_first_token: u, safe_first_token: s } = par.guard;
    for (const ex of par.guard.examples) {
      const ids = ex.input_ids;
      const out = await lm.forward({
        ids: [ids],
        mask: [ids.map(() => 1)],
        positions: [ids.map((_, i) => i)],
        past: null,
      });
      const last = out.logits.subarray((ids.length - 1) * out.vocab, ids.length * out.vocab);
      const pu = 1 / (1 + Math.exp((last[s] as number) - (last[u] as number)));
      expect(Math.abs(pu - ex.p_unsafe)).toBeLessThan(1e-4);
    }
  });
});
