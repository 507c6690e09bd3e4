import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { rulesPlugin } from '../src/plugins/rules/index.js';
import type { CheckOutcome } from '../src/plugins/types.js';
import { evalRequest } from './context.js';
import { dataDir, MODERATION_CATEGORIES, moderationSamples } from './data.js';
import { publishEval } from './publish.js';

const ROOT = join(import.meta.dirname, '..');

const pct = (xs: number[], p: number) => {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))] ?? Number.NaN;
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * The rules plugin (keyword and regex deny-lists) on OpenAI's moderation samples with a plain hand-written list:
 * precision, recall, F1 and false-positive rate of `block`, recall per category, and the time one check takes on a
 * prompt and on a streamed window.
 */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { data: { type: 'string' } }, strict: true });
  const dir = dataDir(values.data);
  const samples = moderationSamples(dir);
  if (!samples) {
    console.log(`eval rules: skipped, no moderation samples under ${dir} (pass --data DIR)`);
    return 0;
  }
  const list = JSON.parse(readFileSync(join(import.meta.dirname, 'rules-keywords.json'), 'utf8')) as {
    keywords: string[];
    regex: string[];
  };
  const config = rulesPlugin.configSchema.parse({ keywords: list.keywords, regex: list.regex });
  const hooks = await rulesPlugin.create(config, { logger: pino({ level: 'silent' }), baseDir: ROOT });
  const { ctx, signal } = evalRequest();

  // Warm the regexes, then time every check.
  for (const s of samples.slice(0, 50))
    await hooks.onRequest?.({ ctx, signal, body: { messages: [{ role: 'user', content: s.prompt }] } });
  const times: number[] = [];
  const flagged: boolean[] = [];
  for (const s of samples) {
    const t0 = performance.now();
    const out = (await hooks.onRequest?.({
      ctx,
      signal,
      body: { messages: [{ role: 'user', content: s.prompt }] },
    })) as CheckOutcome;
    times.push(performance.now() - t0);
    flagged.push(out.verdict === 'block');
  }
  const positive = samples.map((s) => MODERATION_CATEGORIES.some((c) => s.labels[c]));
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  positive.forEach((p, i) => {
    if (p && flagged[i]) tp++;
    else if (p) fn++;
    else if (flagged[i]) fp++;
    else tn++;
  });
  const precision = tp / Math.max(1, tp + fp);
  const recall = tp / Math.max(1, tp + fn);
  const f1 = (2 * precision * recall) / Math.max(1e-9, precision + recall);
  const fpr = fp / Math.max(1, fp + tn);
  const perCategory = Object.fromEntries(
    MODERATION_CATEGORIES.map((c) => {
      const idx = samples.map((s, i) => (s.labels[c] ? i : -1)).filter((i) => i >= 0);
      return [c, { samples: idx.length, recall: r3(idx.filter((i) => flagged[i]).length / Math.max(1, idx.length)) }];
    }),
  );

  // A streamed answer: ~200 tokens of text arriving 4 characters at a time, each chunk checked with its window.
  const streamed = samples.find((s) => s.prompt.length > 800)?.prompt.slice(0, 800) ?? samples[0]?.prompt ?? '';
  const windowTimes: number[] = [];
  let text = '';
  for (let i = 0; i < streamed.length; i += 4) {
    const delta = streamed.slice(i, i + 4);
    text += delta;
    const t0 = performance.now();
    await hooks.onStreamChunk?.({
      ctx,
      signal,
      event: { chunk: { choices: [{ index: 0, delta: { content: delta } }] }, delta, text },
    });
    windowTimes.push(performance.now() - t0);
  }
  const promptChars = samples.reduce((a, s) => a + s.prompt.length, 0) / samples.length;

  const date = new Date().toISOString();
  const json = {
    date,
    data: 'safety/openai-moderation-samples-1680.jsonl.gz (all 1,680 prompts; the list was not fitted to them)',
    samples: samples.length,
    positives: positive.filter(Boolean).length,
    keywords: list.keywords.length,
    regex: list.regex.length,
    threshold: 'any keyword or regex match -> block',
    precision: r3(precision),
    recall: r3(recall),
    f1: r3(f1),
    fpr: r3(fpr),
    per_category: perCategory,
    p50_ms: r3(pct(times, 50)),
    p99_ms: r3(pct(times, 99)),
    mean_prompt_chars: Math.round(promptChars),
    stream_window_p50_ms: r3(pct(windowTimes, 50)),
    stream_window_p99_ms: r3(pct(windowTimes, 99)),
    node: process.version,
    cpus: os.cpus().length,
  };
  const table = [
    '| metric | value | data | threshold | latency p50 / p99 |',
    '|---|--:|---|---|---|',
    `| precision | ${json.precision} | moderation samples, ${json.samples} prompts (${json.positives} with a label) | any match blocks | ${json.p50_ms} / ${json.p99_ms} ms per prompt (mean ${json.mean_prompt_chars} chars) |`,
    `| recall | ${json.recall} | same | same | same |`,
    `| F1 | ${r3(f1)} | same | same | same |`,
    `| false-positive rate | ${json.fpr} | the ${json.samples - json.positives} prompts without a label | same | same |`,
    `| streamed window check | — | an 800-character answer in 4-character chunks | same | ${json.stream_window_p50_ms} / ${json.stream_window_p99_ms} ms per chunk |`,
    '',
    `Recall by category: ${Object.entries(perCategory)
      .map(([c, v]) => `${c} ${v.recall} (${v.samples})`)
      .join(', ')}.`,
  ].join('\n');
  const section = `<!-- eval:start -->\n## Evaluation (${date.slice(0, 10)})\n\nGenerated by \`npm run eval -- rules\` on ${date}; do not edit by hand. A plain hand-written deny-list (eval/rules-keywords.json, ${json.keywords} keywords and ${json.regex} regexes) on OpenAI's moderation samples: what a keyword rule catches, the floor that model-backed guards must beat.\n\n${table}\n<!-- eval:end -->`;

  const reportPath = publishEval('rules', json, section);
  console.log(table);
  console.log(`\nwrote ${reportPath}, docs/rules.md and src/plugins/rules/README.md`);
  return 0;
}
