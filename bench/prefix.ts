/**
 * `npm run bench -- prefix`: the local runtime's prefix cache on multi-turn chat. Each round runs the same
 * conversations twice, through a GenerationEngine with the cache and through one without (the peer: every turn
 * prefilled from its first token), alternating which goes first; the conversations advance turn by turn, all of a
 * turn's requests submitted together as a server would see them. Greedy answers, so both must give the same text.
 *
 * Reported, per mode: prompt tokens prefilled, time to first token (from submission to the first streamed piece),
 * and wall time per round; the ratios are off / on. Writes reports/bench-prefix.json and docs/bench-prefix.md.
 *
 * Flags: --model NAME (tandem-large-chat), --conversations N (4), --turns N (6), --max-tokens N (32),
 * --rounds N (6), --threads N (as the model registry gives it), --write (write the reports for non-default flags).
 */

import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CausalLM } from '../src/slm/causalLM.js';
import { GenerationEngine } from '../src/slm/engine.js';
import type { ChatMessageInput } from '../src/slm/tokenizer.js';
import {
  alternating,
  flagsOffDefault,
  fmt,
  fmtLoad,
  median,
  positive,
  sameAnswers,
  sum,
  threadsFlag,
} from './lib/measure.js';
import { finishRun, localRunHeader, machineFields, writeBenchReports } from './lib/reports.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE_BYTES = 64 * 2 ** 20;
const QUESTIONS = [
  'What does the word lamp mean?',
  'And what does the word river mean?',
  'Give me an example of a sentence with the word harvest.',
  'What is the meaning of the word candle?',
  'Which word means the same as quick?',
  'What does the word mountain mean?',
  'What is the meaning of the word garden?',
  'And the word winter?',
];

interface ModeRound {
  prefilled: number;
  cached: number;
  ttftMs: number[];
  wallMs: number;
  answers: string[];
}

async function runRound(lm: CausalLM, cached: boolean, o: Opts): Promise<ModeRound> {
  const engine = new GenerationEngine(lm, {
    maxBatch: 8,
    queueLimit: 64,
    promptLookup: 0,
    prefixCacheBytes: cached ? CACHE_BYTES : 0,
  });
  const chats: ChatMessageInput[][] = Array.from({ length: o.conversations }, () => []);
  const ttft: number[] = [];
  const answers: string[] = [];
  const t0 = performance.now();
  for (let turn = 0; turn < o.turns; turn++) {
    const results = await Promise.all(
      chats.map(async (chat, c) => {
        chat.push({ role: 'user', content: QUESTIONS[(turn + c) % QUESTIONS.length] as string });
        const prompt = lm.tokenizer.encode(lm.tokenizer.applyChatTemplate(chat, true));
        const submitted = performance.now();
        let first: number | undefined;
        const r = await engine.generate(prompt, {
          maxTokens: o.maxTokens,
          temperature: 0,
          onText: () => {
            first ??= performance.now();
          },
        });
        ttft.push((first ?? performance.now()) - submitted);
        chat.push({ role: 'assistant', content: r.text });
        return r.text;
      }),
    );
    answers.push(...results);
  }
  return {
    prefilled: engine.totals.promptTokens,
    cached: engine.totals.cachedPromptTokens,
    ttftMs: ttft,
    wallMs: performance.now() - t0,
    answers,
  };
}

interface Opts {
  model: string;
  conversations: number;
  turns: number;
  maxTokens: number;
  rounds: number;
  threads: number;
}

export async function run(argv: string[]): Promise<number> {
  const options = {
    model: { type: 'string', default: 'tandem-large-chat' },
    conversations: { type: 'string', default: '4' },
    turns: { type: 'string', default: '6' },
    'max-tokens': { type: 'string', default: '32' },
    rounds: { type: 'string', default: '6' },
    threads: { type: 'string' },
    write: { type: 'boolean', default: false },
  } as const;
  const { values } = parseArgs({ args: argv, options, strict: true });
  const dir = join(ROOT, 'models', values.model);
  const o: Opts = {
    model: values.model,
    conversations: positive(values.conversations, 'conversations'),
    turns: positive(values.turns, 'turns'),
    maxTokens: positive(values['max-tokens'], 'max-tokens'),
    rounds: positive(values.rounds, 'rounds'),
    threads: threadsFlag(values.threads, dir),
  };
  const narrowed = flagsOffDefault(options, values, ['write']);
  const loadBefore = os.loadavg();
  console.log(
    `bench prefix: ${o.model}, ${o.conversations} conversations x ${o.turns} turns, ${o.maxTokens} new tokens per answer (greedy), ${o.rounds} rounds, ${o.threads} thread(s); loadavg ${fmtLoad(loadBefore)}`,
  );
  const lm = await CausalLM.load(dir, { threads: o.threads });
  try {
    const { a: on, b: off } = await alternating(
      o.rounds,
      () => runRound(lm, true, o),
      () => runRound(lm, false, o),
    );
    const same = sameAnswers(on, off);
    const summary = (rs: ModeRound[]) => ({
      prompt_tokens_prefilled: median(rs.map((r) => r.prefilled)),
      prompt_tokens_from_cache: median(rs.map((r) => r.cached)),
      ttft_ms_median: median(rs.flatMap((r) => r.ttftMs)),
      ttft_ms_mean: sum(rs.flatMap((r) => r.ttftMs)) / rs.flatMap((r) => r.ttftMs).length,
      round_ms_median: median(rs.map((r) => r.wallMs)),
    });
    const s = { on: summary(on), off: summary(off) };
    const json = {
      date: new Date().toISOString(),
      model: o.model,
      conversations: o.conversations,
      turns: o.turns,
      max_tokens: o.maxTokens,
      rounds: o.rounds,
      threads: o.threads,
      prefix_cache_bytes: CACHE_BYTES,
      ...machineFields(loadBefore),
      answers_identical: same,
      cache_on: s.on,
      cache_off: s.off,
      prefilled_ratio: s.off.prompt_tokens_prefilled / s.on.prompt_tokens_prefilled,
      ttft_ratio: s.off.ttft_ms_median / s.on.ttft_ms_median,
      round_time_ratio: s.off.round_ms_median / s.on.round_ms_median,
    };
    const lines = [
      `prompt tokens prefilled per round: ${fmt(s.off.prompt_tokens_prefilled, 0)} without the cache, ${fmt(s.on.prompt_tokens_prefilled, 0)} with it (${fmt(s.on.prompt_tokens_from_cache, 0)} taken from it) -> x${fmt(json.prefilled_ratio, 2)} fewer`,
      `time to first token, median: ${fmt(s.off.ttft_ms_median, 2)} ms without, ${fmt(s.on.ttft_ms_median, 2)} ms with -> x${fmt(json.ttft_ratio, 2)}`,
      `wall time per round, median: ${fmt(s.off.round_ms_median, 1)} ms without, ${fmt(s.on.round_ms_median, 1)} ms with -> x${fmt(json.round_time_ratio, 2)}`,
      `answers identical with and without the cache: ${same ? 'yes' : 'NO'}`,
    ];
    finishRun(lines, narrowed, values.write, () => writeReports(json, lines));
    return same ? 0 : 1;
  } finally {
    await lm.release();
  }
}

function writeReports(json: Record<string, unknown>, lines: string[]): void {
  const md = `# Prefix cache on multi-turn chat (${String(json.date).slice(0, 10)})

${localRunHeader('prefix', json)}

${json.conversations} conversations advance together for ${json.turns} turns; each turn re-sends the whole conversation
(chat template applied), as a chat client does, and gets a greedy answer of up to ${json.max_tokens} tokens. Each of
${json.rounds} rounds runs it through a GenerationEngine with a ${Number(json.prefix_cache_bytes) / 2 ** 20} MB prefix cache and
through one without (the peer), alternating which goes first; the cache starts empty every round.

${lines.map((l) => `- ${l}`).join('\n')}

Reproduce: \`npm run bench -- prefix\` (flags: --model, --conversations, --turns, --max-tokens, --rounds, --threads).
`;
  writeBenchReports('prefix', json, md);
}
