/**
 * Benchmark dispatcher: `npm run bench -- <suite> [flags]`.
 * Each suite is a module exporting `run(args)`; it is imported only when asked for, so one suite's heavy
 * dependencies (models, gateways) never load for another.
 */
export interface BenchSuite {
  /** Runs the suite with the CLI arguments that follow its name; resolves to the process exit code. */
  run(args: string[]): Promise<number>;
}

const suites: Record<string, { describe: string; load: () => Promise<BenchSuite> }> = {
  proxy: {
    describe: 'req/s and latency: fake upstream direct vs Tandem passthrough vs Portkey gateway',
    load: () => import('./proxy.js'),
  },
  slm: {
    describe:
      'local models: Tandem runtime vs transformers.js (prefill, decode, greedy parity), batching, bandwidth bound',
    load: () => import('./slm.js'),
  },
  prefix: {
    describe: 'prefix cache on multi-turn chat: prompt tokens prefilled and time to first token, with vs without',
    load: () => import('./prefix.js'),
  },
  chunked: {
    describe: 'chunked prefill: how long a long prompt stalls the streams already running, chunked vs one pass',
    load: () => import('./chunked.js'),
  },
  eft: {
    describe:
      'EFT decoding: tokens/s and upstream calls per token, token-by-token vs speculative, local and remote large',
    load: () => import('./eft.js'),
  },
  guard: {
    describe:
      'latency the guard (safety classifier + privacy PII) adds per request vs passthrough, 32 and 1 connections',
    load: () => import('./guard.js'),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(suites).map((k) => k.length));
  return [
    'usage: npm run bench -- <suite> [flags]',
    '',
    'suites:',
    ...Object.entries(suites).map(([k, s]) => `  ${k.padEnd(width)}  ${s.describe}`),
  ].join('\n');
}

const [name, ...rest] = process.argv.slice(2);
const suite = name ? suites[name] : undefined;
if (!suite) {
  console.error(name ? `unknown bench suite '${name}'\n` : 'no bench suite given\n');
  console.error(usage());
  process.exit(2);
}
try {
  process.exitCode = await (await suite.load()).run(rest);
} catch (err) {
  console.error(`bench ${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
}
