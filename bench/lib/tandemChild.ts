import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Child, freePort, startChild, waitForHttp } from './children.js';

/** The repository root (bench/lib/../..). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Builds dist/ when it is missing or older than any file under src/. */
export function ensureBuild(): void {
  const entry = join(ROOT, 'dist', 'cli', 'index.js');
  const newest = (dir: string): number => {
    let m = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      m = Math.max(m, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return m;
  };
  const srcTime = Math.max(newest(join(ROOT, 'src')), statSync(join(ROOT, 'tsconfig.build.json')).mtimeMs);
  if (existsSync(entry) && statSync(entry).mtimeMs >= srcTime) return;
  console.log(existsSync(entry) ? 'dist/ is older than src/: npm run build' : 'dist/ missing: npm run build');
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0)
    throw new Error(
      `npm run build failed (exit ${r.status}); fix the build or pass --no-build to bench the existing dist/`,
    );
}

export interface TandemChildOptions {
  /** `--upstream URL`: one catch-all route to this OpenAI-compatible base URL, no plugins. */
  upstream?: string;
  /** `--config FILE`. */
  config?: string;
  /** Runs Tandem under `--cpu-prof`, writing the profile here. */
  profDir?: string;
  /** Child name in error messages. */
  name?: string;
}

/**
 * `tandem serve` from dist/ as a child process on 127.0.0.1 and a free port, logging at warn, with a dummy
 * upstream key in TANDEM_UPSTREAM_API_KEY; resolves once /healthz answers.
 */
export async function startTandem(o: TandemChildOptions): Promise<{ url: string; child: Child }> {
  const port = await freePort();
  const nodeArgs = o.profDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profDir}`] : [];
  const child = startChild(
    o.name ?? 'tandem',
    process.execPath,
    [
      ...nodeArgs,
      join(ROOT, 'dist', 'cli', 'index.js'),
      'serve',
      '--port',
      String(port),
      '--host',
      '127.0.0.1',
      ...(o.config ? ['--config', o.config] : []),
      ...(o.upstream ? ['--upstream', o.upstream] : []),
    ],
    { cwd: ROOT, env: { ...process.env, TANDEM_LOG_LEVEL: 'warn', TANDEM_UPSTREAM_API_KEY: 'sk-bench-upstream' } },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/healthz`, (s, b) => s === 200 && b.includes('"ok"'), 30_000, child);
  return { url, child };
}

/** bench/fakeUpstreamMain.ts as its own process (an OpenAI-format echo server on 127.0.0.1); resolves with its URL. */
export async function startFakeUpstream(): Promise<{ url: string; child: Child }> {
  const child = startChild(
    'fake-upstream',
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'fakeUpstreamMain.ts')],
    {
      cwd: ROOT,
    },
  );
  try {
    const url = (JSON.parse(await child.waitForLine(/^\{"url"/, 30_000)) as { url: string }).url;
    return { url, child };
  } catch (err) {
    await child.stop('SIGTERM', 5000);
    throw err;
  }
}
