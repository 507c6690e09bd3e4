import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { CausalLM } from '../src/slm/causalLM.js';
import { readModelFolder } from '../src/slm/folder.js';
import { defaultModelsDir, HubError, type PullOptions, pullModel, repoDir, selectModelFiles } from '../src/slm/hub.js';
import { argmax } from '../src/slm/sampling.js';
import { type FakeHub, type FakeHubOptions, startFakeHub } from './support/fakeHub.js';
import { modelDir } from './support/models.js';

const REPO = 'org/tiny-model';
const json = (o: unknown) => Buffer.from(JSON.stringify(o));

/** A model repo as transformers.js-style exports look: several ONNX variants under onnx/ plus files not needed. */
function modelRepo(): Record<string, Buffer> {
  return {
    '.gitattributes': Buffer.from('*.onnx filter=lfs diff=lfs merge=lfs -text\n'),
    'README.md': Buffer.from('# tiny\n'),
    'config.json': json({ model_type: 'llama', vocab_size: 32 }),
    'generation_config.json': json({ eos_token_id: 2 }),
    'tokenizer.json': Buffer.concat([json({ version: '1.0' }), randomBytes(20_000).fill(32)]),
    'tokenizer_config.json': json({ bos_token: '<s>' }),
    'special_tokens_map.json': json({ eos_token: '</s>' }),
    'model.safetensors': randomBytes(4_000),
    'onnx/model.onnx': randomBytes(300_000),
    'onnx/model.onnx_data': randomBytes(200_000),
    'onnx/model_quantized.onnx': randomBytes(30_000),
    'onnx/model_fp16.onnx': randomBytes(30_000),
    'onnx/decoder_model_merged.onnx': randomBytes(100_000),
    'onnx/decoder_model_merged_quantized.onnx': randomBytes(10_000),
    'onnx/decoder_model.onnx': randomBytes(10_000),
    'onnx/decoder_with_past_model.onnx': randomBytes(10_000),
  };
}

const EXPECTED = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'onnx/decoder_model_merged.onnx',
  'onnx/model.onnx',
  'onnx/model.onnx_data',
];

const hubs: FakeHub[] = [];
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
});

async function hub(opts: Partial<FakeHubOptions> = {}) {
  const files = opts.files ?? modelRepo();
  const h = await startFakeHub({ repo: REPO, ...opts, files });
  hubs.push(h);
  return { h, files };
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'tandem-hub-'));
  dirs.push(d);
  return d;
};

function pull(h: FakeHub, dest: string, extra: Partial<PullOptions> = {}) {
  return pullModel({ repo: REPO, endpoint: h.endpoint, dest, retryBaseMs: 10, ...extra });
}

/** Every file under dir, as repo-relative paths. */
function tree(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tree(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

async function rejection(p: Promise<unknown>): Promise<HubError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HubError);
  return err as HubError;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('selectModelFiles', () => {
  test('fp32 graphs under onnx/ with their data; the merged decoder replaces the unmerged pair', () => {
    expect(selectModelFiles(Object.keys(modelRepo()))).toEqual(EXPECTED);
  });

  test('an Optimum export at the root, and a repo with only quantized graphs', () => {
    expect(selectModelFiles(['config.json', 'model.onnx', 'model.onnx.data', 'model_quantized.onnx'])).toEqual([
      'config.json',
      'model.onnx',
      'model.onnx.data',
    ]);
    // Without fp32, an 8-bit graph before fp16, which onnxruntime multiplies no faster than fp32 on x86 CPUs.
    const quantizedOnly = ['config.json', 'onnx/model_q4.onnx', 'onnx/model_quantized.onnx', 'onnx/model_fp16.onnx'];
    expect(selectModelFiles(quantizedOnly)).toEqual(['config.json', 'onnx/model_quantized.onnx']);
    expect(selectModelFiles(quantizedOnly, 'q4')).toEqual(['config.json', 'onnx/model_q4.onnx']);
    expect(selectModelFiles(quantizedOnly, 'fp16')).toEqual(['config.json', 'onnx/model_fp16.onnx']);
    expect(selectModelFiles(quantizedOnly, 'bnb4')).toEqual(['config.json']);
    // onnx/ wins over a root copy, and seq2seq encoders are kept.
    expect(
      selectModelFiles(['model.onnx', 'onnx/encoder_model.onnx', 'onnx/decoder_model_merged.onnx', 'vocab.json']),
    ).toEqual(['vocab.json', 'onnx/decoder_model_merged.onnx', 'onnx/encoder_model.onnx']);
  });
});

describe('pullModel', () => {
  test('pulls the needed subset byte for byte, and a second pull downloads nothing', async () => {
    const { h, files } = await hub();
    const dest = tmp();
    const events: { file: string; received: number; total: number | undefined }[] = [];
    const pulled = await pull(h, dest, { onProgress: (e) => events.push(e) });

    expect(pulled.map((f) => f.path)).toEqual(EXPECTED);
    expect(tree(dest).sort()).toEqual([...EXPECTED].sort());
    for (const f of pulled) {
      const want = files[f.path] as Buffer;
      expect(readFileSync(join(dest, f.path)).equals(want), f.path).toBe(true);
      expect(f).toEqual({ path: f.path, size: want.length, sha256: sha(want), resumedFrom: 0 });
      expect(events.filter((e) => e.file === f.path).at(-1)).toEqual({
        file: f.path,
        received: want.length,
        total: want.length,
      });
    }
    expect(h.requests.find((r) => r.path.startsWith('/api/'))?.query).toBe('blobs=true');
    // LFS files went through the redirect to the CDN origin.
    expect(h.fileRequests('onnx/model.onnx').map((r) => r.server)).toEqual(['hub', 'cdn']);

    const before = h.requests.length;
    const again = await pull(h, dest);
    expect(again.every((f) => f.resumedFrom === f.size)).toBe(true);
    expect(h.requests.slice(before).map((r) => r.path)).toEqual([`/api/models/${REPO}/revision/main`]);
  });

  test('resumes with a Range request after the connection drops mid-file', async () => {
    const { h, files } = await hub();
    h.faults.dropAfter.set('onnx/model.onnx', 100_000);
    const dest = tmp();
    const pulled = await pull(h, dest);

    const cdn = h.fileRequests('onnx/model.onnx').filter((r) => r.server === 'cdn');
    expect(cdn).toHaveLength(2);
    expect(cdn[0]?.headers.range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdn[1]?.headers.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(100_000);
    expect(pulled.find((f) => f.path === 'onnx/model.onnx')?.resumedFrom).toBe(resumedAt);
    expect(readFileSync(join(dest, 'onnx/model.onnx')).equals(files['onnx/model.onnx'] as Buffer)).toBe(true);
    expect(tree(dest).some((f) => f.endsWith('.incomplete'))).toBe(false);
  });

  test('a partial is restarted when the server ignores Range, or when it came from other bytes', async () => {
    const { h, files } = await hub();
    const dest = tmp();
    const want = files['onnx/model.onnx'] as Buffer;
    mkdirSync(join(dest, 'onnx'), { recursive: true });

    h.faults.ignoreRange = true;
    writeFileSync(join(dest, 'onnx/model.onnx.incomplete'), want.subarray(0, 1000));
    let got = await pull(h, dest, { files: ['onnx/model.onnx'] });
    expect(got[0]?.resumedFrom).toBe(0);
    expect(readFileSync(join(dest, 'onnx/model.onnx')).equals(want)).toBe(true);

    // A stale partial (another revision's bytes) resumes into a sha256 mismatch; it is dropped and fetched whole.
    h.faults.ignoreRange = false;
    writeFileSync(join(dest, 'onnx/model.onnx'), Buffer.alloc(0));
    writeFileSync(join(dest, 'onnx/model.onnx.incomplete'), randomBytes(1000));
    got = await pull(h, dest, { files: ['onnx/model.onnx'] });
    expect(got[0]?.resumedFrom).toBe(0);
    expect(readFileSync(join(dest, 'onnx/model.onnx')).equals(want)).toBe(true);
    const ranges = h.fileRequests('onnx/model.onnx').map((r) => r.headers.range);
    expect(ranges.slice(-4)).toEqual(['bytes=1000-', 'bytes=1000-', undefined, undefined]);
  });

  test('an aborted pull keeps its partial file and the next pull resumes it', async () => {
    const { h, files } = await hub();
    const dest = tmp();
    const stop = new AbortController();
    const err = await rejection(
      pull(h, dest, {
        signal: stop.signal,
        onProgress: (e) => {
          if (e.file === 'onnx/model.onnx' && e.received > 0) stop.abort();
        },
      }),
    );
    expect(err.kind).toBe('aborted');
    expect(existsSync(join(dest, 'onnx/model.onnx.incomplete'))).toBe(true);

    const pulled = await pull(h, dest);
    expect(pulled.find((f) => f.path === 'onnx/model.onnx')?.resumedFrom).toBeGreaterThan(0);
    expect(readFileSync(join(dest, 'onnx/model.onnx')).equals(files['onnx/model.onnx'] as Buffer)).toBe(true);
  });

  test('retries 5xx answers', async () => {
    const { h, files } = await hub();
    h.faults.statuses.set('tokenizer.json', [503, 500]);
    const dest = tmp();
    await pull(h, dest);
    expect(h.fileRequests('tokenizer.json')).toHaveLength(3);
    expect(readFileSync(join(dest, 'tokenizer.json')).equals(files['tokenizer.json'] as Buffer)).toBe(true);
  });

  test('a missing required file is an error naming it', async () => {
    const { h } = await hub();
    h.faults.missing.add('onnx/model.onnx_data');
    const err = await rejection(pull(h, tmp()));
    expect(err.kind).toBe('not_found');
    expect(err.message).toContain(REPO);
    expect(err.message).toContain('onnx/model.onnx_data');
    expect(err.message).toContain('404');
  });

  test('a sha256 mismatch names the file and leaves nothing behind', async () => {
    const { h, files } = await hub();
    const wrong = 'ab'.repeat(32);
    h.faults.declared.set('onnx/model.onnx', { sha256: wrong });
    const dest = tmp();
    const err = await rejection(pull(h, dest));
    expect(err.kind).toBe('mismatch');
    expect(err.message).toContain('onnx/model.onnx');
    expect(err.message).toContain(wrong);
    expect(err.message).toContain(sha(files['onnx/model.onnx'] as Buffer));
    expect(existsSync(join(dest, 'onnx/model.onnx'))).toBe(false);
    expect(existsSync(join(dest, 'onnx/model.onnx.incomplete'))).toBe(false);
  });

  test('a size mismatch, short or long, names the file and both sizes and leaves nothing behind', async () => {
    const { h, files } = await hub();
    const real = (files['tokenizer.json'] as Buffer).length;
    for (const declared of [real + 10, real - 10]) {
      h.faults.declared.set('tokenizer.json', { size: declared });
      const dest = tmp();
      const err = await rejection(pull(h, dest));
      expect(err.kind).toBe('mismatch');
      expect(err.message).toContain('tokenizer.json');
      expect(err.message).toContain(`expected ${declared} bytes`);
      if (declared > real) expect(err.message).toContain(`got ${real}`);
      expect(existsSync(join(dest, 'tokenizer.json'))).toBe(false);
      expect(existsSync(join(dest, 'tokenizer.json.incomplete'))).toBe(false);
    }
  });

  test('401 asks for a token without printing one; the token goes to the hub only', async () => {
    const token = 'hf_secretTOKENvalue123';
    const { h } = await hub({ token });

    const none = await rejection(pull(h, tmp()));
    expect(none.kind).toBe('auth');
    expect(none.details.status).toBe(401);
    expect(none.message).toContain(REPO);
    expect(none.message).toMatch(/needs a token/);

    const wrongToken = 'hf_wrongTOKEN456';
    const wrong = await rejection(pull(h, tmp(), { token: wrongToken }));
    expect(wrong.kind).toBe('auth');
    expect(wrong.message).not.toContain(wrongToken);
    expect(String(wrong.stack)).not.toContain(wrongToken);

    const before = h.requests.length;
    const dest = tmp();
    await pull(h, dest, { token });
    const sent = h.requests.slice(before);
    expect(sent.filter((r) => r.server === 'hub').every((r) => r.headers.authorization === `Bearer ${token}`)).toBe(
      true,
    );
    // The signed CDN URL needs no token, and it is another origin: the token must not leak there.
    expect(sent.some((r) => r.server === 'cdn')).toBe(true);
    expect(sent.filter((r) => r.server === 'cdn').every((r) => r.headers.authorization === undefined)).toBe(true);
    expect(tree(dest).sort()).toEqual([...EXPECTED].sort());
  });

  test('without the API, falls back to the default file list', async () => {
    const files = {
      'config.json': json({ model_type: 'gpt2' }),
      'tokenizer.json': json({ version: '1.0' }),
      'merges.txt': Buffer.from('a b\n'),
      'onnx/model.onnx': randomBytes(150_000),
      'onnx/model.onnx_data': randomBytes(100_000),
      'onnx/model_quantized.onnx': randomBytes(10_000),
      'model.onnx': randomBytes(1_000),
    };
    const { h } = await hub({ files });
    h.faults.noApi = true;
    const dest = tmp();
    const pulled = await pull(h, dest);
    const paths = ['config.json', 'tokenizer.json', 'merges.txt', 'onnx/model.onnx', 'onnx/model.onnx_data'];
    expect(pulled.map((f) => f.path)).toEqual(paths);
    expect(tree(dest).sort()).toEqual([...paths].sort());
    for (const p of paths) expect(readFileSync(join(dest, p)).equals(files[p as keyof typeof files])).toBe(true);
    // Sizes and hashes came from the headers (Content-Length, x-linked-size, x-linked-etag).
    expect(pulled.find((f) => f.path === 'onnx/model.onnx')?.sha256).toBe(sha(files['onnx/model.onnx']));

    // Complete files are recognised from the headers and not fetched again.
    const again = await pull(h, dest);
    expect(again.map((f) => f.resumedFrom)).toEqual(again.map((f) => f.size));
  });

  test('without the API, config.json and an ONNX graph are required', async () => {
    const { h } = await hub({ files: { 'tokenizer.json': json({}), 'onnx/model.onnx': randomBytes(100) } });
    h.faults.noApi = true;
    const noConfig = await rejection(pull(h, tmp()));
    expect(noConfig.message).toContain('config.json');

    const { h: h2 } = await hub({ files: { 'config.json': json({}), 'onnx/model_fp16.onnx': randomBytes(100) } });
    h2.faults.noApi = true;
    const noGraph = await rejection(pull(h2, tmp()));
    expect(noGraph.kind).toBe('not_found');
    expect(noGraph.message).toMatch(/no ONNX model/);
    expect(noGraph.message).toContain('onnx/model.onnx');
  });

  test('--dtype picks a variant; a variant the repo lacks is an error listing what it has', async () => {
    const { h, files } = await hub();
    const dest = tmp();
    const pulled = await pull(h, dest, { dtype: 'quantized' });
    expect(pulled.map((f) => f.path).filter((p) => p.endsWith('.onnx'))).toEqual([
      'onnx/decoder_model_merged_quantized.onnx',
      'onnx/model_quantized.onnx',
    ]);
    expect(
      readFileSync(join(dest, 'onnx/model_quantized.onnx')).equals(files['onnx/model_quantized.onnx'] as Buffer),
    ).toBe(true);
    const err = await rejection(pull(h, tmp(), { dtype: 'q4' }));
    expect(err.kind).toBe('not_found');
    expect(err.message).toContain('no q4 ONNX graph');
    expect(err.message).toContain('it has: fp32, quantized, fp16');
  });

  test('a pulled folder with only a quantized graph loads and generates as the original does', async () => {
    // The real tandem-small-chat, published the way transformers.js exports often are: graphs only under onnx/,
    // here a q8 copy (the fp32 bytes under the variant's name) and an fp16 decoy that must not be chosen.
    const src = modelDir('tandem-small-chat');
    const repo: Record<string, Buffer> = {};
    for (const f of readdirSync(src)) if (f.endsWith('.json')) repo[f] = readFileSync(join(src, f));
    repo['onnx/model_q8.onnx'] = readFileSync(join(src, 'model.onnx'));
    repo['onnx/model_fp16.onnx'] = randomBytes(1_000);
    const { h } = await hub({ files: repo });
    const dest = tmp();
    const pulled = await pull(h, dest);
    expect(pulled.map((f) => f.path)).toContain('onnx/model_q8.onnx');
    expect(existsSync(join(dest, 'onnx/model_fp16.onnx'))).toBe(false);
    const [copy, original] = await Promise.all([
      CausalLM.load(dest, { threads: 1 }),
      CausalLM.load(src, { threads: 1 }),
    ]);
    try {
      const prompt = original.tokenizer.encode('The meaning of the word lamp is');
      const greedy = async (lm: CausalLM) => argmax(await lm.nextTokenLogprobs(prompt));
      expect(await greedy(copy)).toBe(await greedy(original));
    } finally {
      await Promise.all([copy.release(), original.release()]);
    }
    // Two variant graphs and no plain one: the folder asks which, rather than picking one silently.
    writeFileSync(join(dest, 'onnx/model_q4.onnx'), readFileSync(join(src, 'model.onnx')));
    expect(() => readModelFolder(dest)).toThrow(
      /several ONNX graphs \(onnx\/model_q4\.onnx, onnx\/model_q8\.onnx\): choose one with onnxFile/,
    );
    expect(readModelFolder(dest, 'onnx/model_q4.onnx').onnxPath).toBe(join(dest, 'onnx/model_q4.onnx'));
  });

  test('an explicit file list overrides the selection; names and repos are checked', async () => {
    const { h, files } = await hub();
    const dest = tmp();
    const pulled = await pull(h, dest, { files: ['config.json', 'onnx/model_quantized.onnx'] });
    expect(pulled.map((f) => f.path)).toEqual(['config.json', 'onnx/model_quantized.onnx']);
    expect(pulled[1]?.sha256).toBe(sha(files['onnx/model_quantized.onnx'] as Buffer));

    expect((await rejection(pull(h, dest, { files: ['../escape.onnx'] }))).kind).toBe('invalid');
    for (const repo of ['../etc', '/org/name', 'org/name/x', 'org/..', 'org', 'org/na me']) {
      expect((await rejection(pullModel({ repo, endpoint: h.endpoint, dest }))).kind).toBe('invalid');
    }
  });
});

test('defaultModelsDir and repoDir', () => {
  expect(defaultModelsDir({ TANDEM_HOME: '/t' })).toBe('/t/models');
  expect(defaultModelsDir({ HOME: '/home/u' })).toBe('/home/u/.cache/tandem/models');
  expect(repoDir('/m', 'org/name')).toBe('/m/org/name');
});

describe('tandem models pull', () => {
  // The command as the CLI mounts it, run from source in a child process.
  const script = [
    "import { Command } from 'commander';",
    "import { addPullCommand } from './src/cli/modelsPull.ts';",
    "const program = new Command('tandem');",
    "addPullCommand(program.command('models'));",
    "await program.parseAsync(process.argv.slice(1), { from: 'user' });",
  ].join('\n');

  async function run(args: string[], env: NodeJS.ProcessEnv = {}) {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    return { code, stdout, stderr };
  }

  test('pulls into <dir>/<org>/<name> with the token from HF_TOKEN, and exits 1 with the error', async () => {
    const token = 'hf_cliTOKEN789';
    const { h, files } = await hub({ token });
    const dir = tmp();
    const q8Dir = tmp();
    const [ok, bad, q8] = await Promise.all([
      run(['models', 'pull', REPO, '--endpoint', h.endpoint, '--dir', dir], { HF_TOKEN: token }),
      run(['models', 'pull', REPO, '--endpoint', h.endpoint, '--dir', tmp(), '--token-env', 'NO_SUCH_VAR']),
      run(['models', 'pull', REPO, '--endpoint', h.endpoint, '--dir', q8Dir, '--dtype', 'quantized'], {
        HF_TOKEN: token,
      }),
    ]);
    expect(q8.code).toBe(0);
    expect(
      tree(join(q8Dir, 'org', 'tiny-model'))
        .filter((f) => f.endsWith('.onnx'))
        .sort(),
    ).toEqual(['onnx/decoder_model_merged_quantized.onnx', 'onnx/model_quantized.onnx']);

    expect(ok.stderr).not.toContain(token);
    expect(ok.code).toBe(0);
    const dest = join(dir, 'org', 'tiny-model');
    expect(ok.stdout.trim()).toBe(dest);
    expect(tree(dest).sort()).toEqual([...EXPECTED].sort());
    expect(readFileSync(join(dest, 'onnx/model.onnx')).equals(files['onnx/model.onnx'] as Buffer)).toBe(true);

    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain(`${REPO}: HTTP 401`);
  });
});
