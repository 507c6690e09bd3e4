import { APIError } from 'openai';
import { afterEach, describe, expect, test } from 'vitest';
import { z } from 'zod';
import type { JsonObject, PluginDefinition } from '../src/plugins/types.js';
import { startFakeUpstream } from './support/fakeUpstream.js';
import { post, sseEvents } from './support/raw.js';
import { startTandem } from './support/tandem.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()));
});
const chat = (content: string) => ({ model: 'm', messages: [{ role: 'user' as const, content }] });
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new Error('aborted'));
    });
  });

/** Test plugins: each exercises one part of the pipeline contract. */
const upper: PluginDefinition = {
  id: 'upper',
  description: 'rewrites user text to upper case',
  configSchema: z.object({}),
  defaultFailMode: 'closed',
  create: () => ({
    mutates: true,
    async onRequest({ body }) {
      const messages = (body.messages as JsonObject[]).map((m) => ({ ...m, content: String(m.content).toUpperCase() }));
      return { check: 'rewrite', verdict: 'pass', transformed: { ...body, messages } };
    },
  }),
};
const annotate: PluginDefinition = {
  id: 'len',
  description: 'annotates the answer length',
  configSchema: z.object({}),
  defaultFailMode: 'open',
  create: () => ({
    async onResponse({ response }) {
      const text = (response.choices as { message: { content: string } }[])[0]?.message.content ?? '';
      return { check: 'chars', verdict: 'pass', data: { chars: text.length } };
    },
  }),
};
const slow = (id: string, ms: number, failMode: 'open' | 'closed' = 'open'): PluginDefinition => ({
  id,
  description: 'a read-only check that takes a while',
  configSchema: z.object({}),
  defaultFailMode: failMode,
  create: () => ({
    async onRequest({ signal }) {
      await sleep(ms, signal);
      return { check: 'wait', verdict: 'pass', data: { ms } };
    },
  }),
});
const broken: PluginDefinition = {
  id: 'broken',
  description: 'always throws',
  configSchema: z.object({}),
  defaultFailMode: 'closed',
  create: () => ({
    async onRequest() {
      throw new Error('model file missing');
    },
  }),
};
const decoder: PluginDefinition = {
  id: 'mydecoder',
  description: 'takes over decoding',
  configSchema: z.object({}),
  defaultFailMode: 'closed',
  create: () => ({
    async decode({ ctx }) {
      const base = { id: 'dec-1', created: 1, model: ctx.model };
      if (!ctx.stream) {
        return {
          kind: 'json',
          body: {
            ...base,
            object: 'chat.completion',
            choices: [{ index: 0, message: { role: 'assistant', content: 'decoded' }, finish_reason: 'stop' }],
          },
        };
      }
      async function* chunks() {
        for (const t of ['de', 'coded'])
          yield {
            ...base,
            object: 'chat.completion.chunk',
            choices: [{ index: 0, delta: { content: t }, finish_reason: null }],
          };
      }
      return { kind: 'stream', chunks: chunks() };
    },
  }),
};

async function setup(
  plugins: { use: string; failMode?: 'open' | 'closed'; timeoutMs?: number; config?: unknown }[],
  fakeOpts = {},
) {
  const fake = await startFakeUpstream(fakeOpts);
  const t = await startTandem(
    { upstreams: { up: { url: fake.url } }, routes: [{ model: '*', upstream: 'up', plugins }] },
    { plugins: [upper, annotate, slow('slowa', 300), slow('slowb', 300), slow('slowc', 2000), broken, decoder] },
  );
  open.push(t, fake);
  return { fake, t };
}

describe('onRequest', () => {
  test('a deny is a 400 guardrail_blocked naming the check, and nothing goes upstream', async () => {
    const { fake, t } = await setup([{ use: 'rules', config: { keywords: ['forbidden word'] } }]);
    const err = await t.client.chat.completions.create(chat('say the Forbidden Word now')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).type).toBe('guardrail_blocked');
    expect((err as APIError).message).toContain('rules.denylist');
    expect(fake.received).toHaveLength(0);
    const raw = await post(`${t.url}/v1/chat/completions`, chat('forbidden word'));
    expect(raw.headers.get('x-tandem-checks')).toBe('rules.denylist@request=block');
    expect((raw.json().tandem as { checks: { data: unknown }[] }).checks[0]?.data).toEqual({
      matched: ['forbidden word'],
    });
    // Word boundaries: a longer word containing it is fine.
    await t.client.chat.completions.create(chat('unforbidden wordsmith'));
    // Per-check time, requests and latency are in /metrics.
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    expect(metrics).toMatch(
      /tandem_plugin_duration_seconds_count\{check="rules.denylist",hook="request",verdict="block"} 2/,
    );
    expect(metrics).toMatch(
      /tandem_plugin_duration_seconds_count\{check="rules.denylist",hook="request",verdict="pass"} 1/,
    );
    expect(metrics).toMatch(/tandem_requests_total\{endpoint="chat",route="\*",status="400"} 2/);
    expect(metrics).toMatch(/tandem_request_duration_seconds_count\{endpoint="chat",stream="false"} 3/);
  });

  test('flag lets the request through and reports it', async () => {
    const { fake, t } = await setup([{ use: 'rules', config: { regex: ['\\d{3}-\\d{4}'], action: 'flag' } }]);
    const r = await post(`${t.url}/v1/chat/completions`, chat('call 555-1234'));
    expect(r.status).toBe(200);
    expect(r.headers.get('x-tandem-checks')).toBe('rules.denylist@request=flag, rules.denylist@response=flag');
    expect(fake.received).toHaveLength(1);
  });

  test('a transform rewrites what the upstream receives', async () => {
    const { fake, t } = await setup([{ use: 'upper' }]);
    const r = await t.client.chat.completions.create(chat('quiet'));
    expect(fake.received[0]?.body.messages).toEqual([{ role: 'user', content: 'QUIET' }]);
    expect(r.choices[0]?.message.content).toBe('echo: QUIET');
  });

  test('read-only checks run in parallel', async () => {
    const { t } = await setup([{ use: 'slowa' }, { use: 'slowb' }]);
    const t0 = Date.now();
    const r = await post(`${t.url}/v1/chat/completions`, chat('x'));
    expect(Date.now() - t0).toBeLessThan(550);
    expect(r.headers.get('x-tandem-checks')).toBe('slowa.wait@request=pass, slowb.wait@request=pass');
  });

  test('timeouts follow the fail mode: open passes with the error reported, closed blocks', async () => {
    const openRun = await setup([{ use: 'slowc', timeoutMs: 100, failMode: 'open' }]);
    const r = await post(`${openRun.t.url}/v1/chat/completions`, chat('x'));
    expect(r.status).toBe(200);
    const check = (r.json().tandem as { checks: { id: string; verdict: string; error: string }[] }).checks[0];
    expect(check).toMatchObject({ id: 'slowc.error', verdict: 'pass' });
    expect(check?.error).toMatch(/timed out after 100 ms\); fail-open/);

    const closed = await setup([{ use: 'slowc', timeoutMs: 100, failMode: 'closed' }]);
    const b = await post(`${closed.t.url}/v1/chat/completions`, chat('x'));
    expect(b.status).toBe(400);
    expect(b.json().error).toMatchObject({ type: 'guardrail_blocked' });
    expect(closed.fake.received).toHaveLength(0);
  });

  test('a check that throws fails closed by its default and fails open when configured so', async () => {
    const a = await setup([{ use: 'broken' }]);
    const b = await post(`${a.t.url}/v1/chat/completions`, chat('x'));
    expect(b.status).toBe(400);
    expect((b.json().error as { message: string }).message).toContain('model file missing');
    const o = await setup([{ use: 'broken', failMode: 'open' }]);
    expect((await post(`${o.t.url}/v1/chat/completions`, chat('x'))).status).toBe(200);
  });
});

describe('onResponse and streams', () => {
  test('onResponse annotates; an output deny is a 400', async () => {
    const { t } = await setup([{ use: 'len' }, { use: 'rules', config: { keywords: ['secret'], input: false } }]);
    const r = await post(`${t.url}/v1/chat/completions`, chat('hello'));
    const checks = (r.json().tandem as { checks: { id: string; data?: unknown }[] }).checks;
    expect(checks.find((c) => c.id === 'len.chars')?.data).toEqual({ chars: 11 });
    const blocked = await post(`${t.url}/v1/chat/completions`, chat('the secret'));
    expect(blocked.status).toBe(400);
    expect(blocked.json().error).toMatchObject({ type: 'guardrail_blocked' });
  });

  test('a streamed answer that turns bad is cut with an error event and [DONE], even split across chunks', async () => {
    const { t } = await setup([{ use: 'rules', config: { keywords: ['launch codes'], input: false } }]);
    const r = await post(`${t.url}/v1/chat/completions`, {
      ...chat('the launch codes are 1234 and more words'),
      stream: true,
    });
    const events = sseEvents(r.text);
    expect(events.at(-1)).toBe('[DONE]');
    const err = events.at(-2) as { error: { type: string; message: string } };
    expect(err.error.type).toBe('guardrail_blocked');
    const text = events
      .slice(0, -2)
      .map((e) => (e as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '')
      .join('');
    // The words after the violation never reach the client.
    expect(text).not.toContain('1234');
    const clean = await post(`${t.url}/v1/chat/completions`, { ...chat('nothing to see'), stream: true });
    const last = sseEvents(clean.text).at(-2) as { tandem: { checks: { id: string; verdict: string }[] } };
    expect(last.tandem.checks).toEqual([
      expect.objectContaining({ id: 'rules.denylist', verdict: 'pass', hook: 'stream' }),
    ]);
  });
});

describe('decode', () => {
  test('a decode plugin takes over: no upstream call, OpenAI shape kept', async () => {
    const { fake, t } = await setup([{ use: 'mydecoder' }]);
    const r = await t.client.chat.completions.create(chat('x'));
    expect(r.choices[0]?.message.content).toBe('decoded');
    const s = await t.client.chat.completions.create({ ...chat('x'), stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe('decoded');
    expect(fake.received).toHaveLength(0);
  });
});
