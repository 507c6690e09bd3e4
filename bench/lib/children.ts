import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';

/** Longest line a child may print (longer ones are cut to their end). */
const MAX_LINE = 16 * 2 ** 20;

/**
 * Child processes for benchmarks: every one started here is killed when the harness exits, whether it ends
 * normally, throws, or gets SIGINT/SIGTERM.
 */
export interface Child {
  name: string;
  proc: ChildProcess;
  /** Last lines the child wrote (stdout and stderr), for error messages. */
  tail(): string;
  /** Resolves with the first stdout line matching `re`, rejects on exit or after `timeoutMs`. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string>;
  /** Sends `signal`, waits up to `graceMs` for exit, then SIGKILL. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooked = false;

function killAll() {
  for (const p of live) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
  live.clear();
}

function hookExit() {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      console.error(`\nbench: ${sig}, stopping child processes`);
      killAll();
      process.exit(130);
    });
  }
}

export function startChild(
  name: string,
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Child {
  hookExit();
  const proc = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(proc);
  const lines: string[] = [];
  const lineListeners = new Set<(line: string) => void>();
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 40) lines.shift();
  };
  const splitter = (onLine: (l: string) => void) => {
    let buf = '';
    return (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let i = buf.indexOf('\n');
      while (i >= 0) {
        onLine(buf.slice(0, i).replace(/\r$/, ''));
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
      }
      // A child printing without newlines must not grow this without bound; a result line (one JSON document, ~100 KB
      // for a 100-repetition SLM bench) must arrive whole.
      if (buf.length > MAX_LINE) buf = buf.slice(-8000);
    };
  };
  // Always drained: a child blocked on a full pipe would look like a slow server.
  proc.stdout?.on(
    'data',
    splitter((l) => {
      keep(l);
      for (const f of lineListeners) f(l);
    }),
  );
  proc.stderr?.on(
    'data',
    splitter((l) => keep(`[stderr] ${l}`)),
  );
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.once('exit', () => live.delete(proc));
  proc.once('error', (err) => keep(`[spawn error] ${err.message}`));

  return {
    name,
    proc,
    tail: () => lines.join('\n'),
    waitForLine: (re, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => finish(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        const onExit = () =>
          finish(new Error(`${name} exited (code ${proc.exitCode}, signal ${proc.signalCode}) before printing ${re}`));
        const onLine = (l: string) => {
          if (re.test(l)) finish(undefined, l);
        };
        const finish = (err?: Error, line?: string) => {
          clearTimeout(timer);
          lineListeners.delete(onLine);
          proc.off('exit', onExit);
          if (err) reject(new Error(`${err.message}\n--- ${name} output ---\n${lines.join('\n')}`));
          else resolve(line as string);
        };
        lineListeners.add(onLine);
        proc.once('exit', onExit);
      }),
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A port free on 127.0.0.1 right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Polls `url` until `ok(status, body)` holds; throws with the child's output after `timeoutMs`. */
export async function waitForHttp(
  url: string,
  ok: (status: number, body: string) => boolean,
  timeoutMs: number,
  child?: Child,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child && (child.proc.exitCode !== null || child.proc.signalCode !== null)) break;
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const body = await r.text();
      if (ok(r.status, body)) return;
      last = `HTTP ${r.status}: ${body.slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(
    `${url} not ready within ${timeoutMs} ms (last: ${last})${child ? `\n--- ${child.name} output ---\n${child.tail()}` : ''}`,
  );
}
