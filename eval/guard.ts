import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Classifier } from '../src/slm/classifier.js';
import { rng } from '../src/slm/sampling.js';
import { MODERATION_CATEGORIES, type ModerationSample, moderationRun } from './data.js';
import { publishEval } from './publish.js';

const ROOT = join(import.meta.dirname, '..');
const MODEL = 'tandem-safety-classifier';
const BOOTSTRAP = 2000;

type Category = (typeof MODERATION_CATEGORIES)[number];

/** The split of recipes/SPLITS.md: a prompt is held out when int(sha1(prompt), 16) % 10 < 3 (about 30%). */
export const isHeldOut = (prompt: string) =>
  BigInt(`0x${createHash('sha1').update(prompt, 'utf8').digest('hex')}`) % 10n < 3n;

const pct = (xs: number[], p: number) => {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))] ?? Number.NaN;
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * Average precision (area under the precision-recall curve, scikit-learn's step definition): sum over distinct
 * score thresholds of (recall gain) x precision. Tied scores form one threshold, so a coarse score such as a
 * keyword count is not credited for an arbitrary order within a tie.
 */
export function averagePrecision(scores: ArrayLike<number>, labels: ArrayLike<boolean>, idx?: number[]): number {
  const order = idx ?? Array.from({ length: scores.length }, (_, i) => i);
  const sorted = [...order].sort((a, b) => (scores[b] as number) - (scores[a] as number));
  const positives = sorted.reduce((n, i) => n + (labels[i] ? 1 : 0), 0);
  if (positives === 0) return Number.NaN;
  let tp = 0;
  let seen = 0;
  let ap = 0;
  let prevRecall = 0;
  for (let k = 0; k < sorted.length; k++) {
    const i = sorted[k] as number;
    seen++;
    if (labels[i]) tp++;
    const next = sorted[k + 1];
    if (next !== undefined && scores[next] === scores[i]) continue;
    const recall = tp / positives;
    ap += (recall - prevRecall) * (tp / seen);
    prevRecall = recall;
  }
  return ap;
}

interface Counts {
  f1: number;
  fpr: number;
  precision: number;
  recall: number;
}
export function atThreshold(
  scores: ArrayLike<number>,
  labels: ArrayLike<boolean>,
  threshold: number,
  idx?: number[],
): Counts {
  const order = idx ?? Array.from({ length: scores.length }, (_, i) => i);
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  for (const i of order) {
    const flag = (scores[i] as number) >= threshold;
    if (labels[i] && flag) tp++;
    else if (labels[i]) fn++;
    else if (flag) fp++;
    else tn++;
  }
  const precision = tp / Math.max(1, tp + fp);
  const recall = tp / Math.max(1, tp + fn);
  return {
    f1: (2 * precision * recall) / Math.max(1e-9, precision + recall),
    fpr: fp / Math.max(1, fp + tn),
    precision,
    recall,
  };
}

/** The threshold (one of the scores) with the best F1 on the given rows; ties go to the higher threshold. */
function bestF1Threshold(scores: number[], labels: boolean[]): { threshold: number; f1: number } {
  let best = { threshold: Number.POSITIVE_INFINITY, f1: -1 };
  for (const t of [...new Set(scores)].sort((a, b) => b - a)) {
    const { f1 } = atThreshold(scores, labels, t);
    if (f1 > best.f1 + 1e-12) best = { threshold: t, f1 };
  }
  return best;
}

/** Keyword baseline: how many entries of a plain hand-written list match (the rules plugin's matching rules). */
function keywordScorer(list: { keywords: string[]; regex: string[] }) {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const res = [
    ...list.keywords.map((k) => new RegExp(`(?<![\\p{L}\\p{N}])${esc(k)}(?![\\p{L}\\p{N}])`, 'iu')),
    ...list.regex.map((r) => new RegExp(r, 'iu')),
  ];
  return (text: string) => res.reduce((n, re) => n + (re.test(text) ? 1 : 0), 0);
}

interface GuardrailCheck {
  confidence: number;
  detected: boolean;
}
interface GuardrailModule {
  checkInjection(prompt: string): Promise<GuardrailCheck>;
  checkJailbreak(prompt: string): Promise<GuardrailCheck>;
  checkMalicious(prompt: string): Promise<GuardrailCheck>;
}

interface System {
  /** Score per sample (all 1,680; only the split's rows are used for a metric). */
  scores: number[];
  threshold: number;
}

/**
 * The safety classifier (models/tandem-safety-classifier, trained on the 70% split by recipes/safety_classifier.py)
 * against two baselines measured in the same run, on the held-out 30% of OpenAI's moderation samples: a plain
 * keyword list and llm_guardrail 2.1.2 (pretrained TF-IDF + logistic regression models; it cannot be trained).
 * AUPRC, F1 and false-positive rate of "any unsafe" with 95% bootstrap intervals, per-category numbers, and the
 * classifier's latency per prompt (batch 1).
 */
export async function run(argv: string[]): Promise<number> {
  const args = moderationRun('guard', argv);
  if (!args) return 0;
  const { samples } = args;
  const modelDir = args.model ?? join(ROOT, 'models', MODEL);
  if (!existsSync(join(modelDir, 'model.onnx'))) {
    console.log(`eval guard: skipped, no model at ${modelDir} (build it with recipes/safety_classifier.py)`);
    return 0;
  }
  const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as {
    tandem_threshold: number;
    tandem_category_thresholds?: Record<string, number>;
    tandem_threshold_derivation?: string;
  };

  const held = samples.map((s) => isHeldOut(s.prompt));
  const heldIdx = held.flatMap((h, i) => (h ? [i] : []));
  const trainIdx = held.flatMap((h, i) => (h ? [] : [i]));
  const unsafe = (s: ModerationSample) => MODERATION_CATEGORIES.some((c) => s.labels[c]);
  const anyLabel = samples.map(unsafe);

  // --- the classifier: held-out prompts one at a time (batch 1), timed
  const clf = await Classifier.load(modelDir, { threads: 1 });
  const nCat = MODERATION_CATEGORIES.length;
  const catScores: number[][] = MODERATION_CATEGORIES.map(() => samples.map(() => Number.NaN));
  const modelScores = samples.map(() => Number.NaN);
  // As the guard plugin reads a prompt: every token, in windows of the model's length, a label's score its maximum.
  const score = async (prompt: string) => {
    const rows = await clf.logitsOfIds(clf.windows(prompt));
    return Float32Array.from({ length: nCat }, (_, c) => Math.max(...rows.map((r) => r[c] as number)));
  };
  for (const i of heldIdx.slice(0, 20)) await score((samples[i] as ModerationSample).prompt);
  const times: number[] = [];
  for (const i of heldIdx) {
    const t0 = performance.now();
    const row = await score((samples[i] as ModerationSample).prompt);
    times.push(performance.now() - t0);
    let best = 0;
    for (let c = 0; c < nCat; c++) {
      const p = sigmoid(row[c] as number);
      (catScores[c] as number[])[i] = p;
      best = Math.max(best, p);
    }
    modelScores[i] = best;
  }
  await clf.release();
  const labelOrder = clf.labels.join(',');
  if (labelOrder !== MODERATION_CATEGORIES.join(',')) throw new Error(`unexpected labels ${labelOrder}`);

  // --- keyword list: the count of matching entries; its threshold chosen on the training 70% (best F1)
  const list = JSON.parse(readFileSync(join(import.meta.dirname, 'rules-keywords.json'), 'utf8')) as {
    keywords: string[];
    regex: string[];
  };
  const kw = keywordScorer(list);
  const kwTimes: number[] = [];
  const kwScores = samples.map((s) => {
    const t0 = performance.now();
    const n = kw(s.prompt);
    kwTimes.push(performance.now() - t0);
    return n;
  });

  // --- llm_guardrail 2.1.2: three pretrained TF-IDF + LR models (injection, jailbreak, malicious); no training API.
  // The score (malicious alone, or the max of the three) and its threshold are chosen on the training 70%.
  const spec = 'llm_guardrail';
  const lg = (await import(spec)) as GuardrailModule;
  const lgTimes: number[] = [];
  const lgRaw: { injection: number; jailbreak: number; malicious: number; detected: boolean }[] = [];
  for (const s of samples) {
    const t0 = performance.now();
    const [inj, jb, mal] = await Promise.all([
      lg.checkInjection(s.prompt),
      lg.checkJailbreak(s.prompt),
      lg.checkMalicious(s.prompt),
    ]);
    lgTimes.push(performance.now() - t0);
    lgRaw.push({
      injection: inj.confidence,
      jailbreak: jb.confidence,
      malicious: mal.confidence,
      detected: inj.detected || jb.detected || mal.detected,
    });
  }
  const lgVariants: Record<string, number[]> = {
    malicious: lgRaw.map((r) => r.malicious),
    max_of_three: lgRaw.map((r) => Math.max(r.injection, r.jailbreak, r.malicious)),
  };
  const trainLabels = trainIdx.map((i) => anyLabel[i] as boolean);
  const lgTrainAp = Object.fromEntries(
    Object.entries(lgVariants).map(([k, v]) => [k, averagePrecision(v, anyLabel, trainIdx)]),
  );
  const lgVariant = Object.entries(lgTrainAp).sort((a, b) => b[1] - a[1])[0]?.[0] as string;
  const lgScores = lgVariants[lgVariant] as number[];

  const systems: Record<'model' | 'keyword' | 'llm_guardrail', System> = {
    model: { scores: modelScores, threshold: config.tandem_threshold },
    keyword: {
      scores: kwScores,
      threshold: bestF1Threshold(
        trainIdx.map((i) => kwScores[i] as number),
        trainLabels,
      ).threshold,
    },
    llm_guardrail: {
      scores: lgScores,
      threshold: bestF1Threshold(
        trainIdx.map((i) => lgScores[i] as number),
        trainLabels,
      ).threshold,
    },
  };

  // --- point estimates and paired bootstrap intervals on the held-out rows
  const point = (s: System, idx: number[]) => {
    const c = atThreshold(s.scores, anyLabel, s.threshold, idx);
    return { auprc: averagePrecision(s.scores, anyLabel, idx), ...c };
  };
  const names = Object.keys(systems) as (keyof typeof systems)[];
  const est = Object.fromEntries(names.map((n) => [n, point(systems[n], heldIdx)])) as Record<
    keyof typeof systems,
    ReturnType<typeof point>
  >;
  const rand = rng(20261201);
  const boot: Record<string, number[]> = {};
  const push = (k: string, v: number) => {
    if (Number.isNaN(v)) return;
    const list = boot[k] ?? [];
    list.push(v);
    boot[k] = list;
  };
  for (let b = 0; b < BOOTSTRAP; b++) {
    const idx = heldIdx.map(() => heldIdx[Math.floor(rand() * heldIdx.length)] as number);
    const p = Object.fromEntries(names.map((n) => [n, point(systems[n], idx)])) as typeof est;
    for (const n of names) for (const m of ['auprc', 'f1', 'fpr'] as const) push(`${n}.${m}`, p[n][m]);
    for (const n of ['keyword', 'llm_guardrail'] as const)
      for (const m of ['auprc', 'f1'] as const) push(`model-${n}.${m}`, p.model[m] - p[n][m]);
    for (const [c, cat] of MODERATION_CATEGORIES.entries())
      push(
        `model.${cat}.auprc`,
        averagePrecision(
          catScores[c] as number[],
          samples.map((s) => s.labels[cat]),
          idx,
        ),
      );
  }
  const ci = (k: string): [number, number] => [r3(pct(boot[k] ?? [], 2.5)), r3(pct(boot[k] ?? [], 97.5))];

  // --- per category: the classifier's own score per category (threshold per category from the recipe's CV);
  // the baselines have one score, ranked against each category's labels
  const perCategory = Object.fromEntries(
    MODERATION_CATEGORIES.map((cat: Category, c) => {
      const labels = samples.map((s) => s.labels[cat]);
      const thr = config.tandem_category_thresholds?.[cat] ?? config.tandem_threshold;
      const m = atThreshold(catScores[c] as number[], labels, thr, heldIdx);
      return [
        cat,
        {
          positives: heldIdx.filter((i) => labels[i]).length,
          auprc: r3(averagePrecision(catScores[c] as number[], labels, heldIdx)),
          auprc_ci95: ci(`model.${cat}.auprc`),
          threshold: r3(thr),
          f1: r3(m.f1),
          fpr: r3(m.fpr),
          recall: r3(m.recall),
          baseline_keyword_auprc: r3(averagePrecision(kwScores, labels, heldIdx)),
          baseline_keyword_recall: r3(atThreshold(kwScores, labels, systems.keyword.threshold, heldIdx).recall),
          baseline_llm_guardrail_auprc: r3(averagePrecision(lgScores, labels, heldIdx)),
          baseline_llm_guardrail_recall: r3(
            atThreshold(lgScores, labels, systems.llm_guardrail.threshold, heldIdx).recall,
          ),
        },
      ];
    }),
  );
  // the baselines at their own defaults (keyword: any match; llm_guardrail: any of its three models says detected)
  const kwDefault = atThreshold(kwScores, anyLabel, 1, heldIdx);
  const lgDefault = atThreshold(
    lgRaw.map((r) => (r.detected ? 1 : 0)),
    anyLabel,
    1,
    heldIdx,
  );

  const date = new Date().toISOString();
  const positives = heldIdx.filter((i) => anyLabel[i]).length;
  // what flagging every prompt scores: precision = base rate, recall = 1
  const flagAllF1 = (2 * positives) / (heldIdx.length + positives);
  const json = {
    date,
    data: 'safety/openai-moderation-samples-1680.jsonl.gz, held-out 30% (int(sha1(prompt), 16) % 10 < 3)',
    split: { held_out: heldIdx.length, held_out_positives: positives, train: trainIdx.length },
    model: MODEL,
    threshold: r3(config.tandem_threshold),
    threshold_derivation: config.tandem_threshold_derivation ?? '',
    auprc: r3(est.model.auprc),
    auprc_ci95: ci('model.auprc'),
    f1: r3(est.model.f1),
    f1_ci95: ci('model.f1'),
    fpr: r3(est.model.fpr),
    fpr_ci95: ci('model.fpr'),
    precision: r3(est.model.precision),
    recall: r3(est.model.recall),
    baseline_keyword_auprc: r3(est.keyword.auprc),
    baseline_keyword_auprc_ci95: ci('keyword.auprc'),
    baseline_keyword_f1: r3(est.keyword.f1),
    baseline_keyword_f1_ci95: ci('keyword.f1'),
    baseline_keyword_fpr: r3(est.keyword.fpr),
    baseline_keyword_threshold: systems.keyword.threshold,
    baseline_llm_guardrail_auprc: r3(est.llm_guardrail.auprc),
    baseline_llm_guardrail_auprc_ci95: ci('llm_guardrail.auprc'),
    baseline_llm_guardrail_f1: r3(est.llm_guardrail.f1),
    baseline_llm_guardrail_f1_ci95: ci('llm_guardrail.f1'),
    baseline_llm_guardrail_fpr: r3(est.llm_guardrail.fpr),
    baseline_llm_guardrail_threshold: r3(systems.llm_guardrail.threshold),
    baseline_llm_guardrail_score: lgVariant,
    baseline_llm_guardrail_train_auprc: Object.fromEntries(Object.entries(lgTrainAp).map(([k, v]) => [k, r3(v)])),
    f1_flag_everything: r3(flagAllF1),
    baselines_at_defaults: {
      keyword_any_match: { f1: r3(kwDefault.f1), fpr: r3(kwDefault.fpr) },
      llm_guardrail_any_detected: { f1: r3(lgDefault.f1), fpr: r3(lgDefault.fpr) },
    },
    difference_ci95: {
      auprc_vs_keyword: ci('model-keyword.auprc'),
      auprc_vs_llm_guardrail: ci('model-llm_guardrail.auprc'),
      f1_vs_keyword: ci('model-keyword.f1'),
      f1_vs_llm_guardrail: ci('model-llm_guardrail.f1'),
    },
    bootstrap_resamples: BOOTSTRAP,
    per_category: perCategory,
    p50_ms: r3(pct(times, 50)),
    p99_ms: r3(pct(times, 99)),
    latency:
      'tokenize + Classifier.logitsOfIds(Classifier.windows(prompt)) from src/slm/classifier.ts (what the guard plugin runs), one prompt at a time, onnxruntime-node, 1 intra-op thread',
    baseline_keyword_p50_ms: r3(pct(kwTimes, 50)),
    baseline_llm_guardrail_p50_ms: r3(pct(lgTimes, 50)),
    mean_prompt_chars: Math.round(
      heldIdx.reduce((a, i) => a + (samples[i] as ModerationSample).prompt.length, 0) / heldIdx.length,
    ),
    node: process.version,
    cpus: os.cpus().length,
  };

  const f = (x: number, c: [number, number]) => `${x} [${c[0]}, ${c[1]}]`;
  const table = [
    '| system | AUPRC [95% CI] | F1 [95% CI] | false-positive rate | threshold | latency p50 / p99 |',
    '|---|--:|--:|--:|---|---|',
    `| **${MODEL}** | **${f(json.auprc, json.auprc_ci95)}** | **${f(json.f1, json.f1_ci95)}** | ${json.fpr} | max category probability >= ${json.threshold} (chosen by CV on the 70%) | ${json.p50_ms} / ${json.p99_ms} ms per prompt |`,
    `| keyword list (eval/rules-keywords.json) | ${f(json.baseline_keyword_auprc, json.baseline_keyword_auprc_ci95)} | ${f(json.baseline_keyword_f1, json.baseline_keyword_f1_ci95)} | ${json.baseline_keyword_fpr} | >= ${json.baseline_keyword_threshold} matching entries (best F1 on the 70%) | ${json.baseline_keyword_p50_ms} ms |`,
    `| llm_guardrail 2.1.2 (${lgVariant === 'malicious' ? 'malicious model' : 'max of its 3 models'}) | ${f(json.baseline_llm_guardrail_auprc, json.baseline_llm_guardrail_auprc_ci95)} | ${f(json.baseline_llm_guardrail_f1, json.baseline_llm_guardrail_f1_ci95)} | ${json.baseline_llm_guardrail_fpr} | confidence >= ${json.baseline_llm_guardrail_threshold} (best F1 on the 70%) | ${json.baseline_llm_guardrail_p50_ms} ms |`,
  ].join('\n');
  const d = json.difference_ci95;
  const catTable = [
    '| category | held-out positives | AUPRC [95% CI] | F1 | FPR | recall | threshold | keyword AUPRC / recall | llm_guardrail AUPRC / recall |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...Object.entries(perCategory).map(
      ([c, v]) =>
        `| ${c} | ${v.positives} | ${f(v.auprc, v.auprc_ci95)} | ${v.f1} | ${v.fpr} | ${v.recall} | ${v.threshold} | ${v.baseline_keyword_auprc} / ${v.baseline_keyword_recall} | ${v.baseline_llm_guardrail_auprc} / ${v.baseline_llm_guardrail_recall} |`,
    ),
  ].join('\n');
  const beats = (lo: number) => (lo > 0 ? 'above zero' : 'includes zero');
  const lgTrainText = Object.entries(json.baseline_llm_guardrail_train_auprc)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const notes = [
    `Data: the ${heldIdx.length} held-out prompts (${positives} with any label) of OpenAI's moderation samples; the model and every threshold were fitted on the other ${trainIdx.length}. "Any unsafe" = any of the 8 labels (missing labels count as 0); the classifier's score is its largest per-category probability. AUPRC = average precision (ties in a score count as one threshold). Intervals: ${BOOTSTRAP} paired bootstrap resamples of the held-out prompts.`,
    `Differences, model minus baseline [95% CI]: AUPRC vs keyword ${d.auprc_vs_keyword.join(', ')} (${beats(d.auprc_vs_keyword[0])}), vs llm_guardrail ${d.auprc_vs_llm_guardrail.join(', ')} (${beats(d.auprc_vs_llm_guardrail[0])}); F1 vs keyword ${d.f1_vs_keyword.join(', ')} (${beats(d.f1_vs_keyword[0])}), vs llm_guardrail ${d.f1_vs_llm_guardrail.join(', ')} (${beats(d.f1_vs_llm_guardrail[0])}).`,
    `Threshold: ${json.threshold_derivation}`,
    `Baselines: the keyword list is the rules suite's plain hand-written list (${list.keywords.length} keywords, ${list.regex.length} regexes, not fitted to this data), scored by the number of entries that match; at its default (any match blocks) F1 ${json.baselines_at_defaults.keyword_any_match.f1}, FPR ${json.baselines_at_defaults.keyword_any_match.fpr}. llm_guardrail 2.1.2 ships three pretrained TF-IDF + logistic-regression models (prompt injection, jailbreak, malicious) and has no training API, so it is used as is: its score is the one of {malicious, max of the three} with the higher AUPRC on the 70% (${lgTrainText}); at its default (any model detects) F1 ${json.baselines_at_defaults.llm_guardrail_any_detected.f1}, FPR ${json.baselines_at_defaults.llm_guardrail_any_detected.fpr}. For scale: flagging every prompt gives F1 ${json.f1_flag_everything} (FPR 1), and a random score gives AUPRC about ${r3(positives / heldIdx.length)} (the share of unsafe prompts).`,
    `Latency: ${json.latency}; mean held-out prompt ${json.mean_prompt_chars} chars. A prompt longer than the model's 512 tokens is read in overlapping 512-token windows, its score the maximum over them, as the guard plugin reads it. ${json.cpus} CPUs, Node ${json.node}.`,
  ].join('\n\n');
  const body = `Generated by \`npm run eval -- guard\` on ${date}; do not edit by hand. The multi-label safety classifier (models/${MODEL}, built by recipes/safety_classifier.py) against two baselines measured in the same run, on the held-out 30% of OpenAI's moderation samples.\n\n${table}\n\nPer category (the classifier's probability for the category; the baselines' single score ranked against that category's labels):\n\n${catTable}\n\n${notes}\n`;
  const section = `<!-- eval:start -->\n## Evaluation (${date.slice(0, 10)})\n\n${body}<!-- eval:end -->`;
  const reportPath = publishEval(
    'guard',
    json,
    section,
    `# Safety classifier evaluation\n\n## Evaluation (${date.slice(0, 10)})\n\n${body}`,
  );
  console.log(table);
  console.log(`\n${catTable}`);
  console.log(`\nwrote ${reportPath}, docs/guard.md and src/plugins/guard/README.md`);
  return 0;
}
