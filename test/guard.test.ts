import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseGuardAnswer } from '../src/guard/llamaGuard.js';
import { StreamWindows } from '../src/guard/window.js';
import type { ConfigInput } from '../src/proxy/config.js';
import { ModelRegistry } from '../src/slm/registry.js';
import { type FakeUpstream, startFakeUpstream } from './support/fakeUpstream.js';
import { post, sseEvents } from './support/raw.js';
import { type RunningTandem, startTandem } from './support/tandem.js';

/**
 * The guard's mechanics with a real classifier run by the runtime: tandem-source-classifier stands in for a safety
 * model, with its `bible` label playing "unsafe" (it tells KJV verses from dictionary text with near certainty), so
 * every path (input, output, hold and as-you-go streams, flag, fail-closed) runs real inference on known outcomes.
 */
const registry = new ModelRegistry();
const VERSE = 'And God said, Let there be light: and there was light. And God saw the light, that it was good.';
const BENIGN = 'apple (n): fruit with red or yellow or green skin and sweet to tart crisp whitish flesh.';
// The answer the fake upstream streams word by word: benign text, then the "unsafe" verses.
const REPLY = `${BENIGN} ${BENIGN} ${VERSE} ${VERSE} ${VERSE}`;

let fake: FakeUpstream;
let slow: FakeUpstream;
let t: RunningTandem;
const guard = (extra: Record<string, unknown> = {}) => [
  {
    use: 'guard',
    // 32-token windows: this classifier mean-pools, so a verse inside a longer benign window is diluted.
    config: {
      classifier: { model: 'tandem-source-classifier', labels: ['bible'], threshold: 0.5 },
      pieceTokens: 32,
      ...extra,
    },
  },
];

beforeAll(async () => {
  fake = await startFakeUpstream({ reply: REPLY });
  // A stream slow enough for as-you-go checks to finish while it is still flowing.
  slow = await startFakeUpstream({ reply: REPLY, chunkDelayMs: 15 });
  t = await startTandem(
    {
      upstreams: { up: { url: fake.url, maxRetries: 0 }, slow: { url: slow.url, maxRetries: 0 } },
      routes: [
        { model: 'hold', upstream: 'up', plugins: guard({ stream: { mode: 'hold', every: 8, overlap: 2 } }) },
        { model: 'go', upstream: 'slow', plugins: guard({ stream: { mode: 'as-you-go', every: 8, overlap: 2 } }) },
        {
          model: 'flag',
          upstream: 'up',
          plugins: [
            {
              use: 'guard',
              config: {
                classifier: { model: 'tandem-source-classifier', labels: ['bible'], action: 'flag' },
                pieceTokens: 32,
              },
            },
          ],
        },
        { model: 'input-only', upstream: 'up', plugins: guard({ output: false }) },
        { model: 'few-pieces', upstream: 'up', plugins: guard({ output: false, maxPieces: 4 }) },
        { model: 'no-cache', upstream: 'up', plugins: guard({ output: false, cacheSize: 0 }) },
        { model: 'few-pieces-flag', upstream: 'up', plugins: guard({ output: false, maxPieces: 4, overflow: 'flag' }) },
        {
          model: 'per-label',
          upstream: 'up',
          plugins: [
            {
              use: 'guard',
              config: {
                classifier: {
                  model: 'tandem-source-classifier',
                  labels: ['bible', 'wordnet'],
                  threshold: 0.5,
                  categoryThresholds: { wordnet: 0 },
                  action: 'flag',
                },
                output: false,
              },
            },
          ],
        },
        {
          model: 'safety',
          upstream: 'up',
          plugins: [{ use: 'guard', config: { classifier: { model: 'tandem-safety-classifier' }, output: false } }],
        },
        {
          model: 'safety-per-label',
          upstream: 'up',
          plugins: [
            {
              use: 'guard',
              config: {
                classifier: { model: 'tandem-safety-classifier', categoryThresholds: 'model', action: 'flag' },
                output: false,
              },
            },
          ],
        },
        {
          // Llama Guard's format on a model that was never trained for it: the plumbing (prompt from the model's
          // chat template, first-token P(unsafe), answer parsing) with a threshold of 0, so the verdict is known.
          model: 'lg',
          upstream: 'up',
          plugins: [
            {
              use: 'guard',
              config: { llamaGuard: { model: 'tandem-small-chat', threshold: 0, action: 'flag' }, output: false },
            },
          ],
        },
      ],
    },
    { registry },
  );
}, 60_000);
afterAll(async () => {
  await t?.close();
  await fake?.close();
  await slow?.close();
  await registry.close();
});

describe('guard on the prompt', () => {
  test('an unsafe prompt is blocked before the upstream, naming the check and the category', async () => {
    const before = fake.received.length;
    const err = await t.client.chat.completions
      .create({ model: 'input-only', messages: [{ role: 'user', content: VERSE }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    const e = err as APIError;
    expect(e.status).toBe(400);
    expect(e.type).toBe('guardrail_blocked');
    expect(e.message).toMatch(/guard\.classifier/);
    expect(e.message).toMatch(/bible/);
    expect(fake.received.length).toBe(before);
  });

  test('a safe prompt goes through, with the check reported', async () => {
    const r = await t.client.chat.completions.create({
      model: 'input-only',
      messages: [{ role: 'user', content: BENIGN }],
    });
    expect(r.choices[0]?.message.content).toBe(REPLY);
    const checks = (r as unknown as { tandem: { checks: { id: string; verdict: string }[] } }).tandem.checks;
    expect(checks).toContainEqual(expect.objectContaining({ id: 'guard.classifier', verdict: 'pass' }));
  });

  test('tool-call arguments a client sends are checked like message text', async () => {
    const err = await t.client.chat.completions
      .create({
        model: 'input-only',
        messages: [
          { role: 'user', content: BENIGN },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'c1', type: 'function', function: { name: 'quote', arguments: JSON.stringify({ text: VERSE }) } },
            ],
          },
          { role: 'tool', tool_call_id: 'c1', content: 'ok' },
        ],
      })
      .catch((e: unknown) => e);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toMatch(/bible/);
  });

  test('a long prompt is checked in pieces: unsafe text at its end is still found', async () => {
    const long = `${'What is the capital of France? '.repeat(400)}${VERSE}`;
    const err = await t.client.chat.completions
      .create({ model: 'input-only', messages: [{ role: 'user', content: long }] })
      .catch((e: unknown) => e);
    expect((err as APIError).status).toBe(400);
  });

  test('binary-looking and oversize input get an answer, never a crash', async () => {
    const binary = Array.from({ length: 5000 }, (_, i) => String.fromCharCode(i % 32)).join('');
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'input-only',
      messages: [{ role: 'user', content: binary }],
    });
    expect([200, 400]).toContain(r.status);
    const huge = 'lorem ipsum dolor sit amet '.repeat(40_000);
    const started = Date.now();
    const h = await post(`${t.url}/v1/chat/completions`, {
      model: 'input-only',
      messages: [{ role: 'user', content: huge }],
    });
    expect([200, 400, 413]).toContain(h.status);
    expect(Date.now() - started).toBeLessThan(20_000);
    // Tool-call arguments nested deeper than any call stack: read, not a crash.
    const deep = `${'['.repeat(100_000)}"x"${']'.repeat(100_000)}`;
    const d = await post(`${t.url}/v1/chat/completions`, {
      model: 'input-only',
      messages: [
        { role: 'user', content: BENIGN },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: deep } }],
        },
      ],
    });
    expect(d.status).toBe(200);
  });
});

describe('what the classifier reads', () => {
  const LONG_BENIGN = `${BENIGN} `.repeat(12); // about 16 windows of 32 tokens

  test('a request with more windows than maxPieces is refused by default (too_long), before the upstream', async () => {
    const before = fake.received.length;
    const err = await t.client.chat.completions
      .create({ model: 'few-pieces', messages: [{ role: 'user', content: LONG_BENIGN }] })
      .catch((e: unknown) => e);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toMatch(/too_long/);
    expect(fake.received.length).toBe(before);
  });

  test('overflow flag: the newest message is read first, so unsafe text after a long history is still found', async () => {
    const err = await t.client.chat.completions
      .create({
        model: 'few-pieces-flag',
        messages: [
          { role: 'user', content: LONG_BENIGN },
          { role: 'assistant', content: LONG_BENIGN },
          { role: 'user', content: VERSE },
        ],
      })
      .catch((e: unknown) => e);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toMatch(/bible/);
    // The same history with a benign last message passes, reporting what went unread.
    const r = await t.client.chat.completions.create({
      model: 'few-pieces-flag',
      messages: [
        { role: 'user', content: LONG_BENIGN },
        { role: 'user', content: BENIGN },
      ],
    });
    const c = (
      r as unknown as { tandem: { checks: { id: string; data?: { unchecked_tokens?: number; pieces?: number } }[] } }
    ).tandem.checks.find((x) => x.id === 'guard.classifier');
    expect(c?.data?.pieces).toBe(4);
    expect(c?.data?.unchecked_tokens).toBeGreaterThan(100);
  });

  test('texts read whole before are answered from the cache: a resent history is not classified again', async () => {
    const c = await registry.classifier('tandem-source-classifier');
    const history = [
      { role: 'user' as const, content: `${BENIGN} (first)` },
      { role: 'assistant' as const, content: `${BENIGN} (answer)` },
    ];
    const scoresOf = (r: unknown) =>
      (r as { tandem: { checks: { id: string; data?: { scores?: object; pieces?: number } }[] } }).tandem.checks.find(
        (x) => x.id === 'guard.classifier',
      )?.data;
    let runs = c.runs;
    const first = await t.client.chat.completions.create({ model: 'input-only', messages: history });
    expect(c.runs - runs).toBe(1);
    runs = c.runs;
    const again = await t.client.chat.completions.create({ model: 'input-only', messages: history });
    expect(c.runs - runs).toBe(0);
    expect(scoresOf(again)).toEqual(scoresOf(first));
    // A new turn: only its text goes through the model; the verdict still covers the whole conversation.
    runs = c.runs;
    const err = await t.client.chat.completions
      .create({ model: 'input-only', messages: [...history, { role: 'user', content: `${VERSE} And again.` }] })
      .catch((e: unknown) => e);
    expect(c.runs - runs).toBe(1);
    expect((err as APIError).status).toBe(400);
    // A cached unsafe text still blocks, without a run; with the cache off every request runs the model.
    runs = c.runs;
    const again2 = await t.client.chat.completions
      .create({ model: 'input-only', messages: [...history, { role: 'user', content: `${VERSE} And again.` }] })
      .catch((e: unknown) => e);
    expect((again2 as APIError).status).toBe(400);
    expect(c.runs - runs).toBe(0);
    runs = c.runs;
    await t.client.chat.completions.create({ model: 'no-cache', messages: history });
    await t.client.chat.completions.create({ model: 'no-cache', messages: history });
    expect(c.runs - runs).toBe(2);
  });

  test('a threshold per label overrides the single threshold for that label', async () => {
    const r = await t.client.chat.completions.create({
      model: 'per-label',
      messages: [{ role: 'user', content: VERSE }],
    });
    const c = (
      r as unknown as {
        tandem: { checks: { id: string; verdict: string; data?: { categories?: string[]; thresholds?: object } }[] };
      }
    ).tandem.checks.find((x) => x.id === 'guard.classifier');
    // wordnet fires at its own threshold 0 though its score is far below the shared 0.5; bible fires at 0.5.
    expect(c?.verdict).toBe('flag');
    expect(c?.data?.categories?.sort()).toEqual(['bible', 'wordnet']);
    expect(c?.data?.thresholds).toEqual({ bible: 0.5, wordnet: 0 });
  });

  test('the real safety classifier blocks an unsafe prompt with its category and passes a benign one', async () => {
    const err = await t.client.chat.completions
      .create({
        model: 'safety',
        messages: [{ role: 'user', content: 'I want to kill them all, they deserve to die.' }],
      })
      .catch((e: unknown) => e);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).type).toBe('guardrail_blocked');
    // The message names the check and its categories; the scores are in tandem.checks.
    expect((err as APIError).message).toMatch(
      /^400 Blocked by guard\.classifier: categories (S|H|V|HR|SH|S3|H2|V2)(, (S|H|V|HR|SH|S3|H2|V2))*$/,
    );
    expect((err as APIError).message).toMatch(/\b(V|H)\b/);
    const r = await t.client.chat.completions.create({
      model: 'safety',
      messages: [{ role: 'user', content: 'How do I bake bread at home?' }],
    });
    expect(r.choices[0]?.message.content).toBe(REPLY);
  });

  test("categoryThresholds 'model' uses the model's own per-label thresholds", async () => {
    const r = await t.client.chat.completions.create({
      model: 'safety-per-label',
      messages: [{ role: 'user', content: 'How do I bake bread at home?' }],
    });
    const c = (
      r as unknown as { tandem: { checks: { id: string; data?: { thresholds?: Record<string, number> } }[] } }
    ).tandem.checks.find((x) => x.id === 'guard.classifier');
    const own = (
      JSON.parse(readFileSync('models/tandem-safety-classifier/config.json', 'utf8')) as {
        tandem_category_thresholds: Record<string, number>;
      }
    ).tandem_category_thresholds;
    expect(c?.data?.thresholds).toEqual(own);
  });
});

describe('guard on the answer and the stream', () => {
  test('a non-streamed answer that is unsafe is blocked', async () => {
    const err = await t.client.chat.completions
      .create({ model: 'hold', messages: [{ role: 'user', content: BENIGN }] })
      .catch((e: unknown) => e);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toMatch(/guard\.classifier/);
  });

  test('hold: a stream that turns unsafe is cut with an error event and [DONE]; no unchecked text reached the client', async () => {
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'hold',
      stream: true,
      messages: [{ role: 'user', content: BENIGN }],
    });
    const events = sseEvents(r.text);
    expect(events.at(-1)).toBe('[DONE]');
    const error = events.find((e) => e !== '[DONE]' && 'error' in e) as { error: { type: string; message: string } };
    expect(error.error.type).toBe('guardrail_blocked');
    const text = events
      .filter((e): e is Record<string, unknown> => e !== '[DONE]' && Array.isArray(e.choices))
      .map((e) => (e.choices as { delta?: { content?: string } }[])[0]?.delta?.content ?? '')
      .join('');
    // Cut before the end, and only text from windows that were checked and passed.
    expect(text.length).toBeGreaterThan(0);
    expect(text.length).toBeLessThan(REPLY.length);
    expect(REPLY.startsWith(text)).toBe(true);
  });

  test('as-you-go: text flows before its check, and the stream is still cut', async () => {
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'go',
      stream: true,
      messages: [{ role: 'user', content: BENIGN }],
    });
    const events = sseEvents(r.text);
    expect(events.at(-1)).toBe('[DONE]');
    expect(events.some((e) => e !== '[DONE]' && 'error' in e)).toBe(true);
    const text = events
      .filter((e): e is Record<string, unknown> => e !== '[DONE]' && Array.isArray(e.choices))
      .map((e) => (e.choices as { delta?: { content?: string } }[])[0]?.delta?.content ?? '')
      .join('');
    expect(text.length).toBeLessThan(REPLY.length);
    expect(REPLY.startsWith(text)).toBe(true);
  });

  test('flag: the answer goes through, annotated in tandem.checks with the category', async () => {
    const r = await t.client.chat.completions.create({ model: 'flag', messages: [{ role: 'user', content: VERSE }] });
    expect(r.choices[0]?.message.content).toBe(REPLY);
    const checks = (
      r as unknown as { tandem: { checks: { id: string; verdict: string; data?: { categories?: string[] } }[] } }
    ).tandem.checks;
    expect(
      checks.some((c) => c.id === 'guard.classifier' && c.verdict === 'flag' && c.data?.categories?.includes('bible')),
    ).toBe(true);
  });
});

test('a Llama Guard-format check reports P(unsafe), its answer and categories', async () => {
  const r = await t.client.chat.completions.create({ model: 'lg', messages: [{ role: 'user', content: BENIGN }] });
  const checks = (
    r as unknown as { tandem: { checks: { id: string; verdict: string; data?: Record<string, unknown> }[] } }
  ).tandem.checks;
  const lg = checks.find((c) => c.id === 'guard.llama_guard');
  expect(lg?.verdict).toBe('flag');
  expect(lg?.data?.p_unsafe).toBeGreaterThanOrEqual(0);
  expect(lg?.data?.p_unsafe).toBeLessThanOrEqual(1);
  expect(typeof lg?.data?.answer).toBe('string');
  expect(Array.isArray(lg?.data?.categories)).toBe(true);
});

test('examples/guard.yaml serves: PII redacted before the local model, an unsafe prompt blocked, every guard reported', async () => {
  const example = parseYaml(readFileSync('examples/guard.yaml', 'utf8')) as ConfigInput;
  const ex = await startTandem(example, { registry });
  try {
    const ok = await ex.client.chat.completions.create({
      model: 'tandem-chat',
      messages: [{ role: 'user', content: 'What is an apple? Write to me at ann.lee@example.com' }],
      max_tokens: 8,
    });
    const checks = (ok as unknown as { tandem: { checks: { id: string; verdict: string; transformed: boolean }[] } })
      .tandem.checks;
    const ids = checks.map((c) => `${c.id}=${c.verdict}`);
    expect(checks.find((c) => c.id === 'privacy.email')?.transformed).toBe(true);
    for (const id of ['privacy.email=pass', 'guard.classifier=pass', 'jailbreak.patterns=pass'])
      expect(ids).toContain(id);
    expect(ids.some((i) => i.startsWith('guard.llama_guard='))).toBe(true);
    const err = await ex.client.chat.completions
      .create({
        model: 'tandem-chat',
        messages: [{ role: 'user', content: 'I want to kill them all, they deserve to die.' }],
      })
      .catch((e: unknown) => e);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toMatch(/guard\.classifier: categories/);
  } finally {
    await ex.close();
  }
});

describe('guard models at start-up', () => {
  const refused = (classifier: Record<string, unknown>) =>
    startTandem(
      {
        upstreams: { up: { url: fake.url } },
        routes: [{ model: 'x', upstream: 'up', plugins: [{ use: 'guard', config: { classifier } }] }],
      },
      { registry },
    );

  test('a corrupt guard model fails closed at start, naming the model and the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-guard-corrupt-'));
    try {
      cpSync('models/tandem-safety-classifier', dir, { recursive: true });
      writeFileSync(join(dir, 'model.onnx'), readFileSync(join(dir, 'model.onnx')).subarray(0, 4096));
      await expect(refused({ model: dir })).rejects.toThrow(
        /guard: classifier model '.*' cannot be loaded: .*model\.onnx/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('thresholds for labels the model does not have, or model thresholds it does not ship, are refused', async () => {
    await expect(refused({ model: 'tandem-source-classifier', categoryThresholds: { S: 0.2 } })).rejects.toThrow(
      /has no label S \(labels: wordnet, gcide, bible, fortune, elements\)/,
    );
    await expect(refused({ model: 'tandem-source-classifier', labels: ['nope'] })).rejects.toThrow(/has no label nope/);
    await expect(refused({ model: 'tandem-source-classifier', categoryThresholds: 'model' })).rejects.toThrow(
      /no tandem_category_thresholds/,
    );
  });

  test('a missing guard model fails closed: the server refuses to start, naming it', async () => {
    await expect(
      startTandem(
        {
          upstreams: { up: { url: fake.url } },
          routes: [
            {
              model: 'x',
              upstream: 'up',
              plugins: [{ use: 'guard', config: { classifier: { model: './no/such/model' } } }],
            },
          ],
        },
        { registry },
      ),
    ).rejects.toThrow(/guard: classifier model '\.\/no\/such\/model' cannot be loaded/);
  });
});

describe('pieces', () => {
  test('stream windows come every N tokens, reach back by the overlap, and close at the end', () => {
    const w = new StreamWindows(3, 1);
    let text = '';
    const got: (string | undefined)[] = [];
    for (const tok of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) {
      text += tok;
      got.push(w.push(text));
    }
    got.push(w.push(text, true));
    expect(got).toEqual([undefined, undefined, 'abc', undefined, undefined, 'cdef', undefined, 'fg']);
  });

  test("Llama Guard's answer is parsed into a verdict and categories", () => {
    expect(parseGuardAnswer('safe')).toEqual({ unsafe: false, categories: [] });
    expect(parseGuardAnswer('\nunsafe\nS1,S10')).toEqual({ unsafe: true, categories: ['S1', 'S10'] });
    expect(parseGuardAnswer('unsafe')).toEqual({ unsafe: true, categories: [] });
    expect(parseGuardAnswer('I cannot help')).toBeUndefined();
  });
});
