import OpenAI, { AuthenticationError } from 'openai';
import { afterEach, describe, expect, test } from 'vitest';
import { startFakeUpstream } from './support/fakeUpstream.js';
import { expectErrorShape, post } from './support/raw.js';
import { startTandem } from './support/tandem.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()));
});
const chat = { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }] };

const UPSTREAM_KEY = 'sk-upstream-SECRET-1234567890';
const PROXY_KEY = 'tk-proxy-SECRET-0987654321';

describe('auth and secrets', () => {
  test('proxy keys are enforced; the upstream key comes from env and never from the client', async () => {
    const fake = await startFakeUpstream();
    const t = await startTandem(
      {
        auth: { keys: [{ env: 'MY_PROXY_KEY' }] },
        upstreams: { up: { url: fake.url, apiKeyEnv: 'MY_UPSTREAM_KEY' } },
        routes: [{ model: '*', upstream: 'up' }],
      },
      { env: { MY_PROXY_KEY: PROXY_KEY, MY_UPSTREAM_KEY: UPSTREAM_KEY }, apiKey: PROXY_KEY },
    );
    open.push(t, fake);

    const none = await post(`${t.url}/v1/chat/completions`, chat);
    expect(none.status).toBe(401);
    expectErrorShape(none.json());
    const wrong = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: 'tk-wrong-key-123', maxRetries: 0 });
    await expect(wrong.chat.completions.create(chat)).rejects.toBeInstanceOf(AuthenticationError);
    expect(fake.received).toHaveLength(0);

    await t.client.chat.completions.create(chat);
    expect(fake.received[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    // Health and metrics stay reachable for probes.
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);

    // An upstream error must not echo anything secret either.
    fake.enqueue({
      status: 401,
      body: {
        error: {
          message: 'Incorrect API key provided',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      },
    });
    const err = await post(`${t.url}/v1/chat/completions`, chat, { authorization: `Bearer ${PROXY_KEY}` });
    expect(err.status).toBe(401);

    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    const everything = [t.logs.join('\n'), metrics, none.text, err.text].join('\n');
    expect(everything).not.toContain(UPSTREAM_KEY);
    expect(everything).not.toContain(PROXY_KEY);
    expect(everything).not.toContain('SECRET');
  });

  test('with no upstream key configured no Authorization header is sent upstream', async () => {
    const fake = await startFakeUpstream();
    const t = await startTandem({ upstreams: { up: { url: fake.url } }, routes: [{ model: '*', upstream: 'up' }] });
    open.push(t, fake);
    await t.client.chat.completions.create(chat);
    expect(fake.received[0]?.headers.authorization).toBeUndefined();
    expect(t.logs.join('\n')).not.toContain('sk-client-key');
  });

  test('passthroughAuth forwards the client key; proxy auth then uses x-tandem-api-key', async () => {
    const fake = await startFakeUpstream();
    const t = await startTandem(
      {
        auth: { keys: [PROXY_KEY] },
        upstreams: { up: { url: fake.url, passthroughAuth: true } },
        routes: [{ model: '*', upstream: 'up' }],
      },
      { apiKey: 'sk-users-own-key-42' },
    );
    open.push(t, fake);
    const c = new OpenAI({
      baseURL: `${t.url}/v1`,
      apiKey: 'sk-users-own-key-42',
      defaultHeaders: { 'x-tandem-api-key': PROXY_KEY },
      maxRetries: 0,
    });
    await c.chat.completions.create(chat);
    expect(fake.received[0]?.headers.authorization).toBe('Bearer sk-users-own-key-42');
    expect(t.logs.join('\n')).not.toContain('sk-users-own-key-42');
  });
});

describe('cache', () => {
  test('identical temperature-0 requests hit the cache; others do not', async () => {
    const fake = await startFakeUpstream();
    const t = await startTandem({
      upstreams: { up: { url: fake.url } },
      routes: [{ model: '*', upstream: 'up' }],
      cache: { ttlMs: 400 },
    });
    open.push(t, fake);
    const body = { ...chat, temperature: 0 };
    const a = await post(`${t.url}/v1/chat/completions`, body);
    // Key order does not matter.
    const b = await post(`${t.url}/v1/chat/completions`, { temperature: 0, messages: chat.messages, model: 'm' });
    expect(a.headers.get('x-tandem-cache')).toBe('miss');
    expect(b.headers.get('x-tandem-cache')).toBe('hit');
    expect((b.json().tandem as { cache: string }).cache).toBe('hit');
    expect(b.json().choices).toEqual(a.json().choices);
    expect(fake.received).toHaveLength(1);

    const other = await post(`${t.url}/v1/chat/completions`, {
      ...body,
      messages: [{ role: 'user', content: 'other' }],
    });
    expect(other.headers.get('x-tandem-cache')).toBe('miss');
    const warm = await post(`${t.url}/v1/chat/completions`, { ...chat, temperature: 0.7 });
    expect(warm.headers.get('x-tandem-cache')).toBeNull();
    await post(`${t.url}/v1/chat/completions`, { ...body, stream: true });
    expect(fake.received).toHaveLength(4);

    await new Promise((r) => setTimeout(r, 500));
    const expired = await post(`${t.url}/v1/chat/completions`, body);
    expect(expired.headers.get('x-tandem-cache')).toBe('miss');

    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    expect(metrics).toMatch(/tandem_cache_requests_total\{result="hit"} 1/);
    expect(metrics).toMatch(/tandem_cache_requests_total\{result="miss"} 3/);
  });

  test('errors are never cached, and a disabled cache stores nothing', async () => {
    const fake = await startFakeUpstream();
    const t = await startTandem({
      upstreams: { up: { url: fake.url, maxRetries: 0 } },
      routes: [{ model: '*', upstream: 'up' }],
    });
    const off = await startTandem({
      upstreams: { up: { url: fake.url } },
      routes: [{ model: '*', upstream: 'up' }],
      cache: { enabled: false },
    });
    open.push(t, off, fake);
    const body = { ...chat, temperature: 0 };
    fake.enqueue({ status: 500 });
    expect((await post(`${t.url}/v1/chat/completions`, body)).status).toBe(500);
    expect((await post(`${t.url}/v1/chat/completions`, body)).status).toBe(200);
    await post(`${off.url}/v1/chat/completions`, body);
    const again = await post(`${off.url}/v1/chat/completions`, body);
    expect(again.headers.get('x-tandem-cache')).toBeNull();
    expect(fake.received).toHaveLength(4);
  });
});

describe('request ids and logs', () => {
  test('one log line per request, with the request id; a given x-request-id is echoed; no bodies', async () => {
    const fake = await startFakeUpstream();
    const t = await startTandem({ upstreams: { up: { url: fake.url } }, routes: [{ model: '*', upstream: 'up' }] });
    open.push(t, fake);
    const r = await post(
      `${t.url}/v1/chat/completions`,
      { ...chat, messages: [{ role: 'user', content: 'private words' }] },
      { 'x-request-id': 'trace-abc.123' },
    );
    expect(r.headers.get('x-request-id')).toBe('trace-abc.123');
    const bad = await post(`${t.url}/v1/chat/completions`, chat, { 'x-request-id': 'bad id with spaces' });
    expect(bad.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    await new Promise((res) => setTimeout(res, 50));
    const lines = t.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ reqId: 'trace-abc.123', status: 200, path: '/v1/chat/completions', route: '*' });
    expect(typeof lines[0]?.ms).toBe('number');
    expect(t.logs.join('\n')).not.toContain('private words');
  });
});
