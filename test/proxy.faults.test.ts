import { createServer } from 'node:net';
import { APIError } from 'openai';
import { afterEach, describe, expect, test } from 'vitest';
import { startFakeUpstream } from './support/fakeUpstream.js';
import { expectErrorShape, post, sseEvents } from './support/raw.js';
import { type RunningTandem, startTandem } from './support/tandem.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()));
});

async function setup(upstream: Record<string, unknown> = {}, fakeOpts = {}) {
  const fake = await startFakeUpstream(fakeOpts);
  const t = await startTandem({
    upstreams: { up: { url: fake.url, ...upstream } },
    routes: [{ model: '*', upstream: 'up' }],
  });
  open.push(t, fake);
  return { fake, t };
}

const chat = { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }] };

async function metric(t: RunningTandem, name: string): Promise<string[]> {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name));
}

async function healthy(t: RunningTandem) {
  expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  const r = await t.client.chat.completions.create(chat);
  expect(r.choices[0]?.message.content).toBe('echo: hi');
}

/** A port with nothing listening on it. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('retries', () => {
  test('429 then success is retried and counted', async () => {
    const { fake, t } = await setup();
    fake.enqueue({ status: 429, headers: { 'retry-after': '0' } });
    const r = await t.client.chat.completions.create(chat);
    expect(r.choices[0]?.message.content).toBe('echo: hi');
    expect(fake.received).toHaveLength(2);
    expect((await metric(t, 'tandem_upstream_retries_total')).join()).toMatch(/upstream="up"} 1/);
    expect((await metric(t, 'tandem_upstream_errors_total')).join()).toMatch(/kind="429"} 1/);
  });

  test('Retry-After is honoured', async () => {
    const { fake, t } = await setup();
    fake.enqueue({ status: 503, headers: { 'retry-after-ms': '400' } });
    const t0 = Date.now();
    await t.client.chat.completions.create(chat);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
  });

  test('a Retry-After beyond maxRetryAfterMs is not waited for: the 429 goes back at once', async () => {
    const { fake, t } = await setup({ maxRetryAfterMs: 1000 });
    fake.enqueue({ status: 429, headers: { 'retry-after': '120' } });
    const t0 = Date.now();
    const r = await post(`${t.url}/v1/chat/completions`, chat);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('120');
    expectErrorShape(r.json());
  });

  test('500 after every retry keeps the status and the OpenAI shape', async () => {
    const { fake, t } = await setup({ maxRetries: 2 });
    fake.enqueue(...Array.from({ length: 3 }, () => ({ status: 500, headers: { 'retry-after-ms': '1' } })));
    const r = await post(`${t.url}/v1/chat/completions`, chat);
    expect(r.status).toBe(500);
    expect(r.json().error).toMatchObject({ message: 'fake error 500', type: 'server_error' });
    expect(fake.received).toHaveLength(3);
    expect(r.text).not.toMatch(/at .*\.(ts|js):\d+/);
    await healthy(t);
  });

  test('a 4xx from upstream is not retried and keeps its status and message', async () => {
    const { fake, t } = await setup();
    fake.enqueue({
      status: 400,
      body: { error: { message: 'bad thing', type: 'invalid_request_error', param: 'x', code: 'c' } },
    });
    const err = await t.client.chat.completions.create(chat).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toContain('bad thing');
    expect((err as APIError).param).toBe('x');
    expect(fake.received).toHaveLength(1);
  });
});

describe('timeouts and broken upstreams', () => {
  test('an upstream that never answers times out with 504', async () => {
    const { fake, t } = await setup({ timeoutMs: 300, maxRetries: 0 });
    fake.enqueue({ hang: true });
    const r = await post(`${t.url}/v1/chat/completions`, chat);
    expect(r.status).toBe(504);
    expect(r.json().error).toMatchObject({ type: 'timeout_error', code: 'upstream_timeout' });
    await healthy(t);
  });

  test('a timeout is retried like a connection error', async () => {
    const { fake, t } = await setup({ timeoutMs: 300, maxRetries: 1 });
    fake.enqueue({ hang: true });
    const r = await t.client.chat.completions.create(chat);
    expect(r.choices[0]?.message.content).toBe('echo: hi');
    expect(fake.received).toHaveLength(2);
  });

  test('malformed upstream JSON is a 502, not a crash', async () => {
    const { fake, t } = await setup({ maxRetries: 0 });
    fake.enqueue({ malformedJson: true });
    const r = await post(`${t.url}/v1/chat/completions`, chat);
    expect(r.status).toBe(502);
    expect(r.json().error).toMatchObject({ code: 'bad_upstream_response' });
    await healthy(t);
  });

  test('connection reset mid-stream ends the stream with an error event and [DONE], never retried', async () => {
    const { fake, t } = await setup();
    fake.enqueue({ resetAfterChunks: 2 });
    const r = await post(`${t.url}/v1/chat/completions`, {
      ...chat,
      messages: [{ role: 'user', content: 'a b c d e f' }],
      stream: true,
    });
    expect(r.status).toBe(200);
    const events = sseEvents(r.text);
    expect(events.at(-1)).toBe('[DONE]');
    const err = events.at(-2) as Record<string, unknown>;
    expectErrorShape(err);
    expect((err.error as { code: string }).code).toBe('upstream_connection_lost');
    expect(fake.received).toHaveLength(1);
    // The SDK surfaces it as an error, too.
    fake.enqueue({ resetAfterChunks: 1 });
    const s = await t.client.chat.completions.create({ ...chat, stream: true });
    await expect(async () => {
      for await (const _ of s);
    }).rejects.toThrow(/mid-stream/);
    await healthy(t);
  });

  test('an error event from upstream mid-stream reaches the client as an error event', async () => {
    const { fake, t } = await setup();
    fake.enqueue({ errorEventAfterChunks: 1 });
    const r = await post(`${t.url}/v1/chat/completions`, { ...chat, stream: true });
    const events = sseEvents(r.text);
    expect(events.at(-1)).toBe('[DONE]');
    expect((events.at(-2) as { error: { message: string } }).error.message).toBe('fake mid-stream failure');
  });

  test('a stream that goes silent is cut by the idle timeout', async () => {
    const { t } = await setup({ streamIdleTimeoutMs: 200 }, { chunkDelayMs: 600 });
    const r = await post(`${t.url}/v1/chat/completions`, { ...chat, stream: true });
    const events = sseEvents(r.text);
    expect(events.at(-1)).toBe('[DONE]');
    expect((events.at(-2) as { error: { code: string } }).error.code).toBe('upstream_timeout');
  });

  test('an error before the stream starts is a plain JSON error with the upstream status', async () => {
    const { fake, t } = await setup({ maxRetries: 0 });
    fake.enqueue({ status: 503 });
    const r = await post(`${t.url}/v1/chat/completions`, { ...chat, stream: true });
    expect(r.status).toBe(503);
    expectErrorShape(r.json());
  });
});

describe('fallback', () => {
  test('a failing primary falls back to the second upstream', async () => {
    const primary = await startFakeUpstream({ reply: 'from primary' });
    const second = await startFakeUpstream({ reply: 'from fallback' });
    const t = await startTandem({
      upstreams: { a: { url: primary.url, maxRetries: 1 }, b: { url: second.url } },
      routes: [{ model: '*', upstream: 'a', fallback: ['b'] }],
    });
    open.push(t, primary, second);
    primary.enqueue(
      { status: 500, headers: { 'retry-after-ms': '1' } },
      { status: 502, headers: { 'retry-after-ms': '1' } },
    );
    const r = await t.client.chat.completions.create(chat);
    expect(r.choices[0]?.message.content).toBe('from fallback');
    expect(primary.received).toHaveLength(2);
    // Streams fall back too, before their first chunk.
    primary.enqueue({ status: 500 }, { status: 500 });
    const s = await t.client.chat.completions.create({ ...chat, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe('from fallback');
    // A client error is the client's: no fallback.
    primary.enqueue({ status: 400 });
    const bad = await post(`${t.url}/v1/chat/completions`, chat);
    expect(bad.status).toBe(400);
  });

  test('an unreachable primary falls back', async () => {
    const second = await startFakeUpstream({ reply: 'from fallback' });
    const t = await startTandem({
      upstreams: { a: { url: `http://127.0.0.1:${await deadPort()}/v1`, maxRetries: 0 }, b: { url: second.url } },
      routes: [{ model: '*', upstream: 'a', fallback: ['b'] }],
    });
    open.push(t, second);
    const r = await t.client.chat.completions.create(chat);
    expect(r.choices[0]?.message.content).toBe('from fallback');
  });

  test('with nothing reachable the client gets a 502 in OpenAI shape', async () => {
    const t = await startTandem({
      upstreams: { a: { url: `http://127.0.0.1:${await deadPort()}/v1`, maxRetries: 0 } },
      routes: [{ model: '*', upstream: 'a' }],
    });
    open.push(t);
    const r = await post(`${t.url}/v1/chat/completions`, chat);
    expect(r.status).toBe(502);
    expect(r.json().error).toMatchObject({ code: 'upstream_unreachable' });
  });
});

describe('shutdown', () => {
  test('close() lets a stream in flight finish, then refuses new connections', async () => {
    const { t } = await setup({}, { chunkDelayMs: 80 });
    const s = await t.client.chat.completions.create({
      ...chat,
      messages: [{ role: 'user', content: 'one two three four five six' }],
      stream: true,
    });
    const closing = t.server.close(5000);
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe('echo: one two three four five six');
    await closing;
    await expect(fetch(`${t.url}/healthz`)).rejects.toThrow();
  });
});

describe('client disconnect', () => {
  test('a client that goes away aborts the upstream request', async () => {
    const { fake, t } = await setup({}, { chunkDelayMs: 100 });
    const controller = new AbortController();
    const s = await t.client.chat.completions.create(
      { ...chat, messages: [{ role: 'user', content: 'a b c d e f g h i j k l m n o p' }], stream: true },
      { signal: controller.signal },
    );
    let n = 0;
    // The SDK ends an aborted stream quietly.
    for await (const _ of s) if (++n === 2) controller.abort();
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.received[0]?.aborted).toBe(true);
    await healthy(t);
  });

  test('a client that goes away during a non-streamed call aborts it too', async () => {
    const { fake, t } = await setup();
    fake.enqueue({ delayMs: 1000 });
    const controller = new AbortController();
    const p = t.client.chat.completions.create(chat, { signal: controller.signal }).catch(() => 'aborted');
    await fake.waitFor(1);
    controller.abort();
    expect(await p).toBe('aborted');
    await new Promise((r) => setTimeout(r, 100));
    expect(fake.received[0]?.aborted).toBe(true);
  });
});
