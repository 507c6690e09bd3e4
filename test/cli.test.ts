import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { freePort, runCli, tandemCli, waitHealthy } from './support/cli.js';
import { type FakeUpstream, startFakeUpstream } from './support/fakeUpstream.js';

let fake: FakeUpstream;
beforeAll(async () => {
  fake = await startFakeUpstream();
});
afterAll(async () => {
  await fake.close();
});

describe('tandem config check', () => {
  test('every example config is valid', async () => {
    const files = readdirSync('examples').filter((f) => /\.(ya?ml|json)$/.test(f));
    expect(files.length).toBeGreaterThanOrEqual(6);
    const r = await runCli(['config', 'check', ...files.map((f) => join('examples', f))]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(files.length);
  });

  test('prints every error with its field path and exits 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-cfg-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'server:',
        '  port: 99999',
        '  colour: blue',
        'upstreams:',
        '  a:',
        '    url: not-a-url',
        'routes:',
        '  - model: "*"',
        '    upstream: a',
        '    plugins:',
        '      - use: rules',
        '        failMode: sometimes',
        'models:',
        '  tiny: { path: models/tandem-small-chat, queueLimit: 0 }',
      ].join('\n'),
    );
    const r = await runCli(['config', 'check', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('server.port');
    expect(r.stderr).toContain('server');
    expect(r.stderr).toMatch(/colour/);
    expect(r.stderr).toContain('upstreams.a.url: must be an http(s) URL');
    expect(r.stderr).toContain('routes[0].plugins[0].failMode');
    expect(r.stderr).toContain('models.tiny.queueLimit');

    // Second phase: references and plugin configs, all reported together.
    writeFileSync(
      file,
      [
        'upstreams: { a: { url: "http://127.0.0.1:1/v1" } }',
        'routes:',
        '  - { model: "*", upstream: b, fallback: [c] }',
        '  - model: x',
        '    upstream: a',
        '    plugins: [{ use: nope }, { use: rules, config: { regex: ["("], action: maybe } }]',
      ].join('\n'),
    );
    const r2 = await runCli(['config', 'check', file]);
    expect(r2.code).toBe(1);
    for (const path of [
      'routes[0].upstream',
      'routes[0].fallback[0]',
      'routes[1].plugins[0].use',
      'routes[1].plugins[1].config.regex[0]',
      'routes[1].plugins[1].config.action',
    ]) {
      expect(r2.stderr).toContain(path);
    }

    writeFileSync(file, 'routes: [ {model: ');
    const r3 = await runCli(['config', 'check', file]);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toMatch(/not valid YAML/);
  });
});

describe('tandem models', () => {
  test("list shows the shipped family; info shows a graph's inputs and outputs", async () => {
    const list = await runCli(['models', 'list']);
    expect(list.code).toBe(0);
    for (const n of [
      'tandem-large-base',
      'tandem-large-chat',
      'tandem-small-base',
      'tandem-small-chat',
      'tandem-large-oracle',
      'tandem-source-classifier',
    ]) {
      expect(list.stdout).toContain(n);
    }
    const info = await runCli(['models', 'info', 'tandem-source-classifier']);
    expect(info.code).toBe(0);
    const j = JSON.parse(info.stdout) as { kind: string; inputs: string[]; outputs: string[] };
    expect(j.kind).toBe('classifier');
    expect(j.inputs).toEqual(['input_ids', 'attention_mask', 'token_type_ids']);
    expect(j.outputs).toEqual(['logits']);
    const unknown = await runCli(['models', 'info', 'no-such-model']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/No local model named 'no-such-model'/);
  });
});

describe('tandem serve', () => {
  test('--upstream and --port; SIGTERM stops it', async () => {
    const port = await freePort();
    const child = tandemCli(['serve', '--upstream', fake.url, '--port', String(port)], { TANDEM_LOG_LEVEL: 'warn' });
    try {
      await waitHealthy(`http://127.0.0.1:${port}/healthz`);
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: 'any-model',
        messages: [{ role: 'user', content: 'via cli' }],
      });
      expect(r.choices[0]?.message.content).toBe('echo: via cli');
    } finally {
      child.kill('SIGTERM');
      expect(await new Promise((r) => child.on('close', r))).toBe(0);
    }
  });

  test('PORT, TANDEM_UPSTREAM_URL and --upstream-key-env from the environment', async () => {
    const port = await freePort();
    const child = tandemCli(['serve', '--upstream-key-env', 'MY_KEY'], {
      PORT: String(port),
      TANDEM_UPSTREAM_URL: fake.url,
      MY_KEY: 'sk-from-env-var',
      TANDEM_LOG_LEVEL: 'warn',
    });
    try {
      await waitHealthy(`http://127.0.0.1:${port}/healthz`);
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0 });
      await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'k' }] });
      expect(fake.received.at(-1)?.headers.authorization).toBe('Bearer sk-from-env-var');
    } finally {
      child.kill('SIGTERM');
    }
  });

  test('a bad config refuses to start with the errors on stderr', async () => {
    const r = await runCli(['serve', '--port', '70000']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/port/);
  });

  test('the example client runs against it, streaming and not', async () => {
    const port = await freePort();
    const child = tandemCli(['serve', '--upstream', fake.url, '--port', String(port)], { TANDEM_LOG_LEVEL: 'warn' });
    try {
      await waitHealthy(`http://127.0.0.1:${port}/healthz`);
      const ex = spawn(process.execPath, ['examples/client.mjs'], {
        env: { ...process.env, TANDEM_URL: `http://127.0.0.1:${port}/v1` },
      });
      let out = '';
      ex.stdout.on('data', (d) => (out += d));
      expect(await new Promise((r) => ex.on('close', r))).toBe(0);
      expect(out).toContain('answer: echo: What does the word "harbour" mean?');
      expect(out).toContain('stream: echo: Name a chemical element.');
      expect(out).toMatch(/usage: \{"prompt_tokens"/);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
