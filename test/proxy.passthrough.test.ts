import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type FakeUpstream, startFakeUpstream } from './support/fakeUpstream.js';
import { post, sseEvents } from './support/raw.js';
import { type RunningTandem, startTandem } from './support/tandem.js';

let fake: FakeUpstream;
let t: RunningTandem;
let strict: RunningTandem;

beforeAll(async () => {
  fake = await startFakeUpstream();
  const config = {
    upstreams: { up: { url: fake.url } },
    routes: [
      { model: 'alias-model', upstream: 'up', upstreamModel: 'real-model' },
      { model: 'org/alias', upstream: 'up', upstreamModel: 'real-model' },
      { model: 'gpt-*', upstream: 'up' },
    ],
  };
  t = await startTandem(config);
  strict = await startTandem({ ...config, server: { strictOpenAI: true } });
});
afterAll(async () => {
  await t.close();
  await strict.close();
  await fake.close();
});

const last = () => fake.received.at(-1);

describe('non-streaming', () => {
  test('keeps every upstream field and passes unknown request fields through', async () => {
    const body = {
      model: 'gpt-x',
      messages: [{ role: 'user' as const, content: 'hello world' }],
      custom_field: { nested: [1, 2] },
      tandem: { something: 1 },
    };
    const r = await post(`${t.url}/v1/chat/completions`, body);
    expect(r.status).toBe(200);
    const j = r.json();
    expect(j.system_fingerprint).toBe('fp_fake');
    expect(j.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    expect(j.fake_extra_field).toEqual({ kept: true });
    expect((j.choices as { message: { content: string } }[])[0]?.message.content).toBe('echo: hello world');
    expect(last()?.body.custom_field).toEqual({ nested: [1, 2] });
    // Tandem's own per-request options never go upstream.
    expect(last()?.body).not.toHaveProperty('tandem');
    expect(j.tandem).toMatchObject({ request_id: r.headers.get('x-request-id'), checks: [] });
  });

  test('tool calls pass through both ways', async () => {
    const r = await t.client.chat.completions.create({
      model: 'gpt-x',
      messages: [{ role: 'user', content: 'weather?' }],
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }],
      tool_choice: 'auto',
    });
    expect(last()?.body.tools).toHaveLength(1);
    expect(last()?.body.tool_choice).toBe('auto');
    expect(r.choices[0]?.finish_reason).toBe('tool_calls');
    expect(r.choices[0]?.message.tool_calls?.[0]).toMatchObject({ id: 'call_1', function: { name: 'get_weather' } });
  });

  test('logprobs pass through', async () => {
    const r = await t.client.chat.completions.create({
      model: 'gpt-x',
      messages: [{ role: 'user', content: 'a b' }],
      logprobs: true,
      top_logprobs: 3,
    });
    const lp = r.choices[0]?.logprobs?.content;
    expect(lp?.length).toBe(3);
    expect(lp?.[0]?.top_logprobs).toHaveLength(3);
    expect(last()?.body.top_logprobs).toBe(3);
  });

  test('completions endpoint', async () => {
    const r = await t.client.completions.create({ model: 'gpt-x', prompt: 'once upon', max_tokens: 5 });
    expect(r.choices[0]?.text).toBe('echo: once upon');
    expect(last()?.path).toBe('/v1/completions');
    expect(last()?.body.max_tokens).toBe(5);
  });

  test('an alias route renames the model upstream', async () => {
    await t.client.chat.completions.create({ model: 'alias-model', messages: [{ role: 'user', content: 'x' }] });
    expect(last()?.body.model).toBe('real-model');
  });

  test('a model no route matches is a 404 in OpenAI shape', async () => {
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'claude',
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(r.status).toBe(404);
    expect(r.json().error).toMatchObject({ type: 'not_found_error', param: 'model', code: 'model_not_found' });
  });

  test('/v1/models lists exact routes and what catch-all upstreams offer', async () => {
    const list = await t.client.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toContain('alias-model');
    expect(ids).toContain('fake-model');
  });

  test('/v1/models/{id} retrieves one model (ids may hold a slash); an unknown id is a 404 model_not_found', async () => {
    for (const id of ['alias-model', 'org/alias', 'fake-model'])
      expect((await t.client.models.retrieve(id)).id).toBe(id);
    const err = await t.client.models.retrieve('no-such-model').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(404);
    expect((err as APIError).code).toBe('model_not_found');
  });
});

describe('streaming', () => {
  test('relays chunks, honours include_usage, ends with a tandem event and [DONE]', async () => {
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'gpt-x',
      messages: [{ role: 'user', content: 'one two three' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = sseEvents(r.text);
    expect(events.at(-1)).toBe('[DONE]');
    const objs = events.filter((e): e is Record<string, unknown> => e !== '[DONE]');
    const text = objs.map((o) => (o.choices as { delta?: { content?: string } }[])[0]?.delta?.content ?? '').join('');
    expect(text).toBe('echo: one two three');
    const usage = objs.find((o) => o.usage);
    expect(usage?.usage).toMatchObject({ completion_tokens: 4 });
    const tandem = objs.at(-1);
    expect(tandem?.choices).toEqual([]);
    expect(tandem?.tandem).toMatchObject({ checks: [] });
    expect(last()?.body.stream_options).toEqual({ include_usage: true });
  });

  test('the openai SDK reads the stream unharmed', async () => {
    const s = await t.client.chat.completions.create({
      model: 'gpt-x',
      messages: [{ role: 'user', content: 'alpha beta' }],
      stream: true,
    });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe('echo: alpha beta');
  });

  test('completions stream', async () => {
    const s = await t.client.completions.create({ model: 'gpt-x', prompt: 'p q', stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.text ?? '';
    expect(text).toBe('echo: p q');
  });

  test('chunks arrive as they are made, not buffered', async () => {
    const slow = await startFakeUpstream({ chunkDelayMs: 150 });
    const s = await startTandem({ upstreams: { up: { url: slow.url } }, routes: [{ model: '*', upstream: 'up' }] });
    try {
      const t0 = Date.now();
      const stream = await s.client.chat.completions.create({
        model: 'm',
        messages: [{ role: 'user', content: 'a b c d e' }],
        stream: true,
      });
      const times: number[] = [];
      for await (const c of stream) if (c.choices[0]?.delta?.content) times.push(Date.now() - t0);
      // Six word chunks, 150 ms apart: the first must arrive long before the last.
      expect(times.length).toBe(6);
      expect((times.at(-1) as number) - (times[0] as number)).toBeGreaterThan(500);
    } finally {
      await s.close();
      await slow.close();
    }
  });
});

describe('other endpoints are relayed', () => {
  test('embeddings through the SDK, routed by model, with the upstream key', async () => {
    const e = await t.client.embeddings.create({ model: 'gpt-embed', input: ['abc', 'hello'] });
    expect(e.data.map((d) => d.embedding[0])).toEqual([3, 5]);
    expect(last()?.path).toBe('/v1/embeddings');
    expect(last()?.body).toEqual({ model: 'gpt-embed', input: ['abc', 'hello'], encoding_format: 'base64' });
    // A model no route serves is still ours to refuse.
    const r = await post(`${t.url}/v1/embeddings`, { model: 'nope', input: 'x' });
    expect(r.status).toBe(404);
    expect(r.json().error).toMatchObject({ code: 'model_not_found' });
  });

  test('an upstream error on a relayed endpoint keeps its status and shape', async () => {
    const r = await post(`${t.url}/v1/moderations?x=1`, { model: 'gpt-mod', input: 'hello' });
    expect(r.status).toBe(404);
    expect(r.json()).toMatchObject({ error: { message: 'fake: no route POST /v1/moderations', code: 'unknown_url' } });
    // Without a model and without a catch-all route there is nowhere to relay to.
    const d = await fetch(`${t.url}/v1/files/file-123`, { method: 'DELETE' });
    expect(d.status).toBe(404);
    expect(((await d.json()) as { error: { message: string } }).error.message).toMatch(/no catch-all route/);
  });
});

describe('strict_openai', () => {
  test('no tandem field and no extra SSE event', async () => {
    const j = await post(`${strict.url}/v1/chat/completions`, {
      model: 'gpt-x',
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(j.json()).not.toHaveProperty('tandem');
    const s = await post(`${strict.url}/v1/chat/completions`, {
      model: 'gpt-x',
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
    });
    const events = sseEvents(s.text);
    expect(events.some((e) => e !== '[DONE]' && 'tandem' in e)).toBe(false);
    expect(events.at(-1)).toBe('[DONE]');
  });
});
