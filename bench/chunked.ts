/**
 * `npm run bench -- chunked`: what a long prompt's arrival costs the requests already streaming, with chunked prefill
 * (`prefillChunkTokens`) against the peer, the same engine feeding each prompt in one pass. Each round starts a few
 * greedy generations, and once all of them are streaming submits one long prompt; the stall is the longest gap
 * between two tokens of a running stream while the long prompt waits for its first token. The price of chunking is
 * the long prompt's own time to first token (more, smaller passes). Greedy throughout, so both modes must give the
 * same text. Writes reports/bench-chunked.json and docs/bench-chunked.md.
 *
 * Flags: --model NAME (tandem-large-chat), --chunk N (32), --running N (4), --rounds N (10), --threads N (as the
 * model registry gives it), --write (write the reports for non-default flags).
 */

import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CausalLM } from '../src/slm/causalLM.js';
import { GenerationEngine } from '../src/slm/engine.js';
import {
  alternating,
  flagsOffDefault,
  fmt,
  fmtLoad,
  median,
  positive,
  sameAnswers,
  threadsFlag,
} from './lib/measure.js';
import { finishRun, localRunHeader, machineFields, writeBenchReports } from './lib/reports.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RUNNING_TOKENS = 64;
const LONG_TOKENS = 8;
const STARTS = [
  'In the beginning God created the heaven and the earth.',
  'What does the word lamp mean?',
  'A fortune cookie says',
  'Gold is a chemical element',
  'The river ran past the old mill',
  'Give me an example of a sentence with the word harvest.',
];
/** Long enough to fill most of the family's 256-token context. */
const LONG =
  'And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved ' +
  'upon the face of the waters. And God said, Let there be light: and there was light. And God saw the light, that it ' +
  'was good: and God divided the light from the darkness. And God called the light Day, and the darkness he called ' +
  'Night. And the evening and the morning were the first day. And God said, Let there be a firmament in the midst of ' +
  'the waters, and let it divide the waters from the waters. And God made the firmament, and divided the waters ' +
  'which were under the firmament from the waters which were above the firmament: and it was so. And God called the ' +
  'firmament Heaven. And the evening and the morning were the second day. And God said, Let the waters under the ' +
  'heaven be gathered together unto one place, and let the dry land appear: and it was so. And God called the dry ' +
  'land Earth; and the gathering together of the waters called he Seas: and God saw that it was good.';

interface Round {
  stallMs: number;
  longTtftMs: number;
  answers: string[];
}

async function runRound(lm: CausalLM, chunk: number | undefined, o: Opts, long: number[]): Promise<Round> {
  const engine = new GenerationEngine(lm, { maxBatch: 8, queueLimit: 64, promptLookup: 0, prefillChunkTokens: chunk });
  const stamps: number[][] = Array.from({ length: o.running }, () => []);
  const running = STARTS.slice(0, o.running).map((text, i) =>
    engine.generate(lm.tokenizer.encode(text), {
      maxTokens: RUNNING_TOKENS,
      temperature: 0,
      ignoreEos: true,
      onText: (_d, t) => t && stamps[i]?.push(performance.now()),
    }),
  );
  // Submit the long prompt once every running stream has a few tokens out.
  await new Promise<void>((done) => {
    const poll = () => (stamps.every((s) => s.length >= 4) ? done() : setImmediate(poll));
    poll();
  });
  const submitted = performance.now();
  let first: number | undefined;
  const longDone = engine.generate(long, {
    maxTokens: LONG_TOKENS,
    temperature: 0,
    ignoreEos: true,
    onText: (_d, t) => {
      if (t) first ??= performance.now();
    },
  });
  const results = await Promise.all([...running, longDone]);
  const firstAt = first ?? performance.now();
  // The longest wait of any running stream that overlaps the long prompt's prefill.
  let stall = 0;
  for (const s of stamps)
    for (let k = 1; k < s.length; k++) {
      const [a, b] = [s[k - 1] as number, s[k] as number];
      if (b > submitted && a < firstAt) stall = Math.max(stall, b - a);
    }
  return { stallMs: stall, longTtftMs: firstAt - submitted, answers: results.map((r) => r.text) };
}

interface Opts {
  model: string;
  chunk: number;
  running: number;
  rounds: number;
  threads: number;
}

export async function run(argv: string[]): Promise<number> {
  const options = {
    model: { type: 'string', default: 'tandem-large-chat' },
    chunk: { type: 'string', default: '32' },
    running: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '10' },
    threads: { type: 'string' },
    write: { type: 'boolean', default: false },
  } as const;
  const { values } = parseArgs({ args: argv, options, strict: true });
  const dir = join(ROOT, 'models', values.model);
  const o: Opts = {
    model: values.model,
    chunk: positive(values.chunk, 'chunk'),
    running: Math.min(STARTS.length, positive(values.running, 'running')),
    rounds: positive(values.rounds, 'rounds'),
    threads: threadsFlag(values.threads, dir),
  };
  const narrowed = flagsOffDefault(options, values, ['write']);
  const loadBefore = os.loadavg();
  const lm = await CausalLM.load(dir, { threads: o.threads });
  try {
    const long = lm.tokenizer.encode(LONG).slice(0, lm.contextLength - LONG_TOKENS);
    console.log(
      `bench chunked: ${o.model}, ${o.running} running greedy streams of ${RUNNING_TOKENS} tokens, then a ${long.length}-token prompt; chunks of ${o.chunk} vs one pass, ${o.rounds} rounds, ${o.threads} thread(s); loadavg ${fmtLoad(loadBefore)}`,
    );
    const { a: chunked, b: whole } = await alternating(
      o.rounds,
      () => runRound(lm, o.chunk, o, long),
      () => runRound(lm, undefined, o, long),
    );
    const same = sameAnswers(chunked, whole);
    const summary = (rs: Round[]) => ({
      stall_ms_median: median(rs.map((r) => r.stallMs)),
      long_ttft_ms_median: median(rs.map((r) => r.longTtftMs)),
    });
    const s = { chunked: summary(chunked), whole: summary(whole) };
    const json = {
      date: new Date().toISOString(),
      model: o.model,
      chunk_tokens: o.chunk,
      long_prompt_tokens: long.length,
      running_streams: o.running,
      rounds: o.rounds,
      threads: o.threads,
      ...machineFields(loadBefore),
      answers_identical: same,
      chunked: s.chunked,
      one_pass: s.whole,
      stall_ratio: s.whole.stall_ms_median / s.chunked.stall_ms_median,
      long_ttft_ratio: s.chunked.long_ttft_ms_median / s.whole.long_ttft_ms_median,
    };
    const lines = [
      `longest gap in a running stream while the ${long.length}-token prompt is prefilled, median: ${fmt(s.whole.stall_ms_median, 2)} ms in one pass, ${fmt(s.chunked.stall_ms_median, 2)} ms in chunks of ${o.chunk} -> x${fmt(json.stall_ratio, 2)} shorter`,
      `the long prompt's own time to first token, median: ${fmt(s.whole.long_ttft_ms_median, 2)} ms in one pass, ${fmt(s.chunked.long_ttft_ms_median, 2)} ms chunked -> x${fmt(json.long_ttft_ratio, 2)} (its price)`,
      `answers identical chunked and in one pass: ${same ? 'yes' : 'NO'}`,
    ];
    finishRun(lines, narrowed, values.write, () => writeReports(json, lines));
    return same ? 0 : 1;
  } finally {
    await lm.release();
  }
}

function writeReports(json: Record<string, unknown>, lines: string[]): void {
  const md = `# Chunked prefill: a long prompt arriving while others stream (${String(json.date).slice(0, 10)})

${localRunHeader('chunked', json)}

${json.running_streams} greedy generations of ${RUNNING_TOKENS} tokens stream from one GenerationEngine; once each has a few
tokens out, a ${json.long_prompt_tokens}-token prompt arrives. Each of ${json.rounds} rounds runs this with the prompt prefilled in
chunks of ${json.chunk_tokens} positions (\`prefillChunkTokens\`; the running streams take a decoding step between chunks) and
with the peer, the same engine feeding each prompt in one pass, alternating which goes first. The stall is the
longest gap between two tokens of a running stream while the long prompt waits for its first token.
The config's default chunk, 256, is the family's chat models' whole context, so they never split a prompt; the bench
sets ${json.chunk_tokens} to show the mechanism at this scale (for a large model on CPU a 256-position pass takes seconds).

${lines.map((l) => `- ${l}`).join('\n')}

Reproduce: \`npm run bench -- chunked\` (flags: --model, --chunk, --running, --rounds, --threads).
`;
  writeBenchReports('chunked', json, md);
}
