import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { graphVariant } from './folder.js';

/** Downloads a model folder (Hugging Face Optimum ONNX layout) from a Hugging Face-compatible hub. */

export interface PullOptions {
  /** "org/name". */
  repo: string;
  /** Branch, tag or commit; default 'main'. */
  revision?: string;
  /** Default process.env.HF_ENDPOINT ?? 'https://huggingface.co'. */
  endpoint?: string;
  /** Folder the files are written into; created if missing. */
  dest: string;
  /** Sent as `Authorization: Bearer`, to the hub's own origin only. Never logged or put in errors. */
  token?: string;
  /** Exact files to fetch (all required); otherwise chosen from the hub's file list. */
  files?: string[];
  /**
   * Graph variant to take (fp32, quantized, q8, q4, fp16, ... as transformers.js names them); default: the first of
   * VARIANT_PREFERENCE the repo has.
   */
  dtype?: string;
  signal?: AbortSignal;
  onProgress?: (e: { file: string; received: number; total: number | undefined }) => void;
  /** First retry delay; doubles on each retry. Default 500 ms. */
  retryBaseMs?: number;
}

export interface PulledFile {
  path: string;
  size: number;
  sha256?: string;
  /** Bytes already on disk before this pull: 0 for a fresh download, `size` for a file that was skipped. */
  resumedFrom: number;
}

export type HubErrorKind = 'invalid' | 'auth' | 'not_found' | 'mismatch' | 'http' | 'network' | 'aborted';

/** A failed pull. Messages name the repo, the file and the HTTP status; never the token. */
export class HubError extends Error {
  override readonly name = 'HubError';
  constructor(
    message: string,
    readonly kind: HubErrorKind,
    readonly details: { repo: string; file?: string; status?: number; retryable?: boolean; resumedFrom?: number },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get retryable(): boolean {
    return this.details.retryable === true;
  }
}

/** Where `tandem models pull` puts models unless told otherwise. */
export function defaultModelsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TANDEM_HOME) return join(env.TANDEM_HOME, 'models');
  return join(env.HOME || homedir(), '.cache', 'tandem', 'models');
}

/** The folder a repo is pulled into under a models folder: `<root>/<org>/<name>`. */
export function repoDir(root: string, repo: string): string {
  const [org, name] = checkRepo(repo).split('/') as [string, string];
  return join(root, org, name);
}

// The hub's model-info answer; only the fields used here. It comes from the network, so it is parsed, not trusted.
const SiblingSchema = z.object({
  rfilename: z.string(),
  size: z.number().int().nonnegative().nullish(),
  lfs: z.object({ sha256: z.string(), size: z.number().int().nonnegative() }).nullish(),
});
const ModelInfoSchema = z.object({ siblings: z.array(SiblingSchema) });

interface Wanted {
  path: string;
  size?: number;
  sha256?: string;
}

interface Ctx {
  repo: string;
  revision: string;
  /** Without a trailing slash; may carry a path prefix (mirrors). */
  base: string;
  origin: string;
  dest: string;
  token?: string;
  signal?: AbortSignal;
  onProgress?: PullOptions['onProgress'];
  retryBaseMs: number;
}

const MAX_RETRIES = 3;
const MAX_REDIRECTS = 10;
const SHA256 = /^[0-9a-f]{64}$/;

/** Tokenizer and config files an ONNX model folder may need; only config.json is required. */
const META_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'added_tokens.json',
  'vocab.json',
  'vocab.txt',
  'merges.txt',
  'tokenizer.model',
  'spiece.model',
];

/**
 * Variants in the order this CPU runtime wants them: fp32, then the 8-bit and 4-bit weight formats onnxruntime has
 * CPU kernels for (MatMulInteger, MatMulNBits), and fp16 last: onnxruntime runs it on x86 CPUs, but a half-precision
 * matrix product there is no faster than fp32 (an fp16 [1,1024]x[1024,4096] MatMul took longer than the fp32 one on
 * this project's 2-core machine), so it saves memory without the speed the quantized formats bring.
 */
const VARIANT_PREFERENCE = ['fp32', 'quantized', 'q8', 'uint8', 'int8', 'q4', 'bnb4', 'fp16', 'q4f16'];
const GRAPH = /^(?:onnx\/)?[^/]+\.onnx$/;
// External weights: model.onnx_data, model.onnx.data, and the numbered shards of very large graphs.
const GRAPH_DATA = /^((?:onnx\/)?[^/]+\.onnx)(?:_data|\.data)(?:_\d+)?$/;

/**
 * The files of a hub listing a model folder needs: config and tokenizer files, and one set of ONNX graphs with their
 * external data. Graphs come from onnx/ when it has any (the transformers.js layout), else from the root (an Optimum
 * export); of the variants there, `dtype` when given, else the first of VARIANT_PREFERENCE present, and a merged
 * decoder makes the unmerged pair redundant.
 */
export function selectModelFiles(names: readonly string[], dtype?: string): string[] {
  const present = new Set(names);
  const meta = META_FILES.filter((f) => present.has(f));
  const pool = graphPool(names);
  const variants = [...new Set(pool.map(graphVariant))].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  let chosen = pool.filter((g) => graphVariant(g) === (dtype ?? variants[0]));
  const isMerged = (g: string) => /decoder_model_merged(_[^/]+)?\.onnx$/.test(g);
  if (chosen.some(isMerged))
    chosen = chosen.filter((g) => isMerged(g) || !/decoder_(with_past_)?model(_[^/]+)?\.onnx$/.test(g));
  const chosenSet = new Set(chosen);
  const data = names.filter((n) => {
    const graph = GRAPH_DATA.exec(n)?.[1];
    return graph !== undefined && chosenSet.has(graph);
  });
  return [...meta, ...[...chosen, ...data].sort()];
}

/** The graphs a selection draws from: those under onnx/ when there are any (the transformers.js layout), else all. */
function graphPool(names: readonly string[]): string[] {
  const graphs = names.filter((n) => GRAPH.test(n));
  const inOnnxDir = graphs.filter((g) => g.startsWith('onnx/'));
  return inOnnxDir.length > 0 ? inOnnxDir : graphs;
}

function rank(variant: string): number {
  const i = VARIANT_PREFERENCE.indexOf(variant);
  return i < 0 ? VARIANT_PREFERENCE.length : i;
}

export async function pullModel(opts: PullOptions): Promise<PulledFile[]> {
  const ctx = context(opts);
  try {
    await mkdir(ctx.dest, { recursive: true });
    if (opts.files) {
      const files = opts.files.map((f) => checkPath(ctx.repo, f));
      // The listing only adds expected sizes and hashes here; without it the response headers are used.
      const listed = await listFiles(ctx);
      const byPath = new Map(listed?.map((w) => [w.path, w]));
      const out: PulledFile[] = [];
      for (const f of files) out.push(await download(ctx, byPath.get(f) ?? { path: f }, true));
      return out;
    }
    const listed = await listFiles(ctx);
    return listed ? await pullListed(ctx, listed, opts.dtype) : await pullDefaults(ctx, opts.dtype);
  } catch (err) {
    throw redact(err, ctx.token);
  }
}

async function pullListed(ctx: Ctx, listed: Wanted[], dtype: string | undefined): Promise<PulledFile[]> {
  const byPath = new Map(listed.map((w) => [w.path, w]));
  const names = listed.map((w) => w.path);
  const chosen = selectModelFiles(names, dtype);
  if (dtype && !chosen.some((f) => f.endsWith('.onnx'))) {
    const have = [...new Set(graphPool(names).map(graphVariant))].sort((a, b) => rank(a) - rank(b));
    throw new HubError(
      `${ctx.repo}: no ${dtype} ONNX graph at revision ${ctx.revision} (it has: ${have.join(', ') || 'none'})`,
      'not_found',
      { repo: ctx.repo },
    );
  }
  if (!chosen.includes('config.json'))
    throw new HubError(`${ctx.repo}: no config.json at revision ${ctx.revision}`, 'not_found', {
      repo: ctx.repo,
      file: 'config.json',
    });
  if (!chosen.some((f) => f.endsWith('.onnx')))
    throw new HubError(
      `${ctx.repo}: no ONNX model at revision ${ctx.revision} (expected *.onnx at the root or under onnx/)`,
      'not_found',
      { repo: ctx.repo },
    );
  const out: PulledFile[] = [];
  for (const f of chosen) out.push(await download(ctx, byPath.get(f) ?? { path: f }, true));
  return out;
}

const DEFAULT_GRAPHS = ['model.onnx', 'encoder_model.onnx', 'decoder_model_merged.onnx'];

/** Without a listing, probes the usual names: a 404 is fine except for config.json, and one ONNX graph must exist. */
async function pullDefaults(ctx: Ctx, dtype: string | undefined): Promise<PulledFile[]> {
  const out: PulledFile[] = [];
  const fetchOne = async (path: string, required: boolean) => {
    const got = await download(ctx, { path }, required);
    if (got) out.push(got);
    return got;
  };
  for (const f of META_FILES) await fetchOne(f, f === 'config.json');
  const suffix = dtype && dtype !== 'fp32' ? `_${dtype}` : '';
  const candidates = ['onnx/', ''].map((dir) =>
    DEFAULT_GRAPHS.map((g) => dir + g.replace(/\.onnx$/, `${suffix}.onnx`)),
  );
  const graphs: string[] = [];
  for (const dir of candidates) {
    for (const g of dir) if (await fetchOne(g, false)) graphs.push(g);
    if (graphs.length > 0) break;
  }
  if (graphs.length === 0) {
    throw new HubError(
      `${ctx.repo}: no ONNX model at revision ${ctx.revision} (the file list API is unavailable and none of ${candidates.flat().join(', ')} exists)`,
      'not_found',
      { repo: ctx.repo },
    );
  }
  for (const g of graphs) for (const suffix of ['_data', '.data']) await fetchOne(g + suffix, false);
  return out;
}

function context(opts: PullOptions): Ctx {
  const repo = checkRepo(opts.repo);
  const revision = opts.revision ?? 'main';
  if (!/^[\w.\-/]+$/.test(revision) || revision.includes('..'))
    throw new HubError(`${repo}: invalid revision ${JSON.stringify(revision)}`, 'invalid', { repo });
  const raw = opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new HubError(`invalid hub endpoint ${JSON.stringify(raw)}`, 'invalid', { repo });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new HubError(`hub endpoint must be http(s): ${JSON.stringify(raw)}`, 'invalid', { repo });
  return {
    repo,
    revision,
    base: `${url.origin}${url.pathname}`.replace(/\/+$/, ''),
    origin: url.origin,
    dest: opts.dest,
    token: opts.token || undefined,
    signal: opts.signal,
    onProgress: opts.onProgress,
    retryBaseMs: opts.retryBaseMs ?? 500,
  };
}

function checkRepo(repo: string): string {
  // The repo names a folder on disk as well as URLs: no traversal, no absolute paths, nothing but the hub's charset.
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo) || repo.includes('..') || repo.split('/').includes('.'))
    throw new HubError(`invalid repo ${JSON.stringify(repo)}: expected "org/name"`, 'invalid', { repo });
  return repo;
}

/** A relative path inside the model folder; file names come from the network or the user and are written to disk. */
function checkPath(repo: string, path: string): string {
  const segments = path.split('/');
  const bad =
    path.length === 0 ||
    path.includes('\\') ||
    path.includes('\0') ||
    path.endsWith('.incomplete') ||
    segments.some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw new HubError(`${repo}: invalid file name ${JSON.stringify(path)}`, 'invalid', { repo, file: path });
  return path;
}

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

/** The repo's files with sizes and hashes, or undefined when this hub has no usable file list API. */
async function listFiles(ctx: Ctx): Promise<Wanted[] | undefined> {
  const url = `${ctx.base}/api/models/${ctx.repo}/revision/${encodeURIComponent(ctx.revision)}?blobs=true`;
  let body: unknown;
  try {
    body = await withRetries(ctx, async () => {
      const { res } = await request(ctx, url, { accept: 'application/json' }, 'the file list');
      try {
        return await res.json();
      } catch (err) {
        if (ctx.signal?.aborted) throw err;
        return undefined; // not JSON: a plain file server, not a hub
      }
    });
  } catch (err) {
    // 401/403 and network failures would hit the files just the same; anything else means "no API here".
    if (err instanceof HubError && (err.kind === 'http' || err.kind === 'not_found')) return undefined;
    throw err;
  }
  const parsed = ModelInfoSchema.safeParse(body);
  if (!parsed.success) return undefined;
  const out: Wanted[] = [];
  for (const s of parsed.data.siblings) {
    try {
      checkPath(ctx.repo, s.rfilename);
    } catch {
      continue; // a name we would refuse to write is never selected anyway
    }
    const sha = s.lfs?.sha256.toLowerCase();
    out.push({
      path: s.rfilename,
      size: s.lfs?.size ?? s.size ?? undefined,
      sha256: sha && SHA256.test(sha) ? sha : undefined,
    });
  }
  return out;
}

interface Linked {
  size?: number;
  sha256?: string;
}

/**
 * One GET, following redirects by hand: the hub answers LFS files with a redirect to a CDN whose own headers lack the
 * file's size and hash (x-linked-size, x-linked-etag are on the redirect), and the token must not follow the request
 * to another origin. Returns 2xx and 416 answers; other statuses become HubErrors.
 */
async function request(
  ctx: Ctx,
  start: string,
  headers: Record<string, string>,
  file: string,
): Promise<{ res: Response; linked: Linked }> {
  const linked: Linked = {};
  let url = new URL(start);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const h = { ...headers };
    if (ctx.token && url.origin === ctx.origin) h.authorization = `Bearer ${ctx.token}`;
    let res: Response;
    try {
      res = await fetch(url, { headers: h, redirect: 'manual', signal: ctx.signal });
    } catch (err) {
      throw transient(ctx, file, err);
    }
    linked.size ??= sizeHeader(res.headers.get('x-linked-size'));
    linked.sha256 ??= shaHeader(res.headers.get('x-linked-etag'));
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await discard(res);
      url = new URL(location, url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new HubError(`${ctx.repo}: ${file}: redirected to a non-HTTP URL`, 'http', { repo: ctx.repo, file });
      continue;
    }
    if (res.ok || res.status === 416) return { res, linked };
    await discard(res);
    throw statusError(ctx, file, res.status);
  }
  throw new HubError(`${ctx.repo}: ${file}: too many redirects`, 'http', { repo: ctx.repo, file });
}

function statusError(ctx: Ctx, file: string, status: number): HubError {
  const { repo, revision } = ctx;
  if (status === 401 || status === 403) {
    const why = ctx.token
      ? 'the token given was refused: it has no access to this repo (accept its terms on the hub if it is gated)'
      : 'the repo is private or gated (or does not exist) and needs a token (HF_TOKEN)';
    return new HubError(`${repo}: HTTP ${status} for ${file}: ${why}`, 'auth', { repo, file, status });
  }
  if (status === 404)
    return new HubError(`${repo}: ${file} not found at revision ${revision} (HTTP 404)`, 'not_found', {
      repo,
      file,
      status,
    });
  const retryable = status === 408 || status === 429 || status >= 500;
  return new HubError(`${repo}: HTTP ${status} for ${file}`, 'http', { repo, file, status, retryable });
}

function transient(ctx: Ctx, file: string, err: unknown): HubError {
  if (ctx.signal?.aborted)
    return new HubError(`${ctx.repo}: ${file}: download aborted`, 'aborted', { repo: ctx.repo, file });
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : '';
  const msg = err instanceof Error ? err.message : String(err);
  return new HubError(
    `${ctx.repo}: ${file}: connection failed (${cause ? `${msg}: ${cause}` : msg})`,
    'network',
    { repo: ctx.repo, file, retryable: true },
    { cause: err },
  );
}

async function withRetries<T>(ctx: Ctx, attempt: () => Promise<T>): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof HubError) || !err.retryable || n >= MAX_RETRIES || ctx.signal?.aborted) throw err;
      await sleep(ctx.retryBaseMs * 2 ** n * (1 - Math.random() * 0.25), ctx);
    }
  }
}

/** Downloads one file. A file that is not required and answers 404 gives undefined. */
async function download(ctx: Ctx, file: Wanted, required: true): Promise<PulledFile>;
async function download(ctx: Ctx, file: Wanted, required: boolean): Promise<PulledFile | undefined>;
async function download(ctx: Ctx, file: Wanted, required: boolean): Promise<PulledFile | undefined> {
  const final = join(ctx.dest, ...file.path.split('/'));
  await mkdir(dirname(final), { recursive: true });
  if (file.size !== undefined) {
    const done = await existing(ctx, file.path, final, file.size, file.sha256);
    if (done) return done;
  }
  let restarted = false;
  for (;;) {
    try {
      return await withRetries(ctx, () => fetchFile(ctx, file, final));
    } catch (err) {
      if (!required && err instanceof HubError && err.kind === 'not_found') return undefined;
      // A partial left by an older revision resumes into garbage; it has been deleted, so start over once.
      if (err instanceof HubError && err.kind === 'mismatch' && (err.details.resumedFrom ?? 0) > 0 && !restarted) {
        restarted = true;
        continue;
      }
      throw err;
    }
  }
}

/** The finished file, if one is already on disk with the expected size and hash. */
async function existing(
  ctx: Ctx,
  path: string,
  final: string,
  size: number,
  sha256: string | undefined,
): Promise<PulledFile | undefined> {
  const onDisk = await fileSize(final);
  if (onDisk !== size) return undefined;
  const hash = createHash('sha256');
  await hashFile(final, hash);
  const actual = hash.digest('hex');
  if (sha256 && actual !== sha256) return undefined;
  ctx.onProgress?.({ file: path, received: size, total: size });
  return { path, size, sha256: actual, resumedFrom: size };
}

/** One attempt: resumes `<file>.incomplete` with a Range request when there is one, streams to disk while hashing. */
async function fetchFile(ctx: Ctx, file: Wanted, final: string): Promise<PulledFile> {
  const part = `${final}.incomplete`;
  const offset = (await fileSize(part)) ?? 0;
  const url = `${ctx.base}/${ctx.repo}/resolve/${encodeURIComponent(ctx.revision)}/${encodePath(file.path)}`;
  // identity: a compressed transfer would make Content-Length and Range offsets count the wrong bytes.
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (offset > 0) headers.range = `bytes=${offset}-`;
  const { res, linked } = await request(ctx, url, headers, file.path);
  const details = { repo: ctx.repo, file: file.path };

  if (res.status === 416 || (res.status === 206 && contentRange(res)?.start !== offset)) {
    // The partial does not fit what the server has now: drop it and start again.
    await discard(res);
    await rm(part, { force: true });
    throw new HubError(`${ctx.repo}: ${file.path}: server refused to resume`, 'http', { ...details, retryable: true });
  }
  const start = res.status === 206 ? offset : 0;
  const total = res.status === 206 ? contentRange(res)?.total : sizeHeader(res.headers.get('content-length'));
  const expectedSize = file.size ?? linked.size ?? total;
  const expectedSha = file.sha256 ?? linked.sha256;

  if (file.size === undefined && expectedSize !== undefined) {
    const done = await existing(ctx, file.path, final, expectedSize, expectedSha);
    if (done) {
      await discard(res);
      await rm(part, { force: true });
      return done;
    }
  }

  const hash = createHash('sha256');
  if (start > 0) await hashFile(part, hash);
  let received = start;
  ctx.onProgress?.({ file: file.path, received, total: expectedSize });
  const out = await open(part, start > 0 ? 'a' : 'w');
  let tooBig = false;
  try {
    if (res.body) {
      const chunks = res.body[Symbol.asyncIterator]();
      try {
        for (;;) {
          let step: IteratorResult<Uint8Array>;
          try {
            step = await chunks.next();
          } catch (err) {
            throw transient(ctx, file.path, err);
          }
          if (step.done) break;
          received += step.value.byteLength;
          if (expectedSize !== undefined && received > expectedSize) {
            tooBig = true;
            break;
          }
          hash.update(step.value);
          await writeAll(out, step.value);
          ctx.onProgress?.({ file: file.path, received, total: expectedSize });
        }
      } finally {
        await chunks.return?.().catch(() => {});
      }
    }
  } finally {
    await out.close();
  }

  if (expectedSize !== undefined && received !== expectedSize) {
    await rm(part, { force: true });
    const got = tooBig ? `more than ${expectedSize} (at least ${received})` : String(received);
    throw new HubError(
      `${ctx.repo}: ${file.path}: size mismatch: expected ${expectedSize} bytes, got ${got}`,
      'mismatch',
      { ...details, resumedFrom: start },
    );
  }
  const actual = hash.digest('hex');
  if (expectedSha && actual !== expectedSha) {
    await rm(part, { force: true });
    throw new HubError(
      `${ctx.repo}: ${file.path}: sha256 mismatch: expected ${expectedSha}, got ${actual}`,
      'mismatch',
      { ...details, resumedFrom: start },
    );
  }
  await rename(part, final);
  return { path: file.path, size: received, sha256: actual, resumedFrom: start };
}

function contentRange(res: Response): { start: number; total: number | undefined } | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range')?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[2] === '*' ? undefined : Number(m[2]) };
}

function sizeHeader(v: string | null): number | undefined {
  return v && /^\d+$/.test(v.trim()) ? Number(v.trim()) : undefined;
}

/** The hub puts an LFS file's sha256 in x-linked-etag (quoted); for other files it is a git hash, not usable here. */
function shaHeader(v: string | null): string | undefined {
  const s = v
    ?.trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1')
    .toLowerCase();
  return s && SHA256.test(s) ? s : undefined;
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

async function writeAll(out: FileHandle, bytes: Uint8Array): Promise<void> {
  // A write may be short; fs.promises does not loop for us.
  for (let off = 0; off < bytes.byteLength; ) off += (await out.write(bytes, off)).bytesWritten;
}

async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

function sleep(ms: number, ctx: Ctx): Promise<void> {
  return new Promise((resolve, reject) => {
    const signal = ctx.signal;
    const aborted = () => new HubError(`${ctx.repo}: download aborted`, 'aborted', { repo: ctx.repo });
    if (signal?.aborted) return reject(aborted());
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Last line of defence: no message leaves this module with the token in it, whatever produced it. */
function redact(err: unknown, token: string | undefined): unknown {
  if (!token || !(err instanceof Error) || !err.message.includes(token)) return err;
  const message = err.message.split(token).join('***');
  if (err instanceof HubError) return new HubError(message, err.kind, err.details);
  return new Error(message);
}
