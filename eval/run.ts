/**
 * `npm run eval -- <suite> [flags]`: evaluations that publish a dated table (metric, data, threshold, latency) in a
 * plugin's README, plus reports/eval-<suite>.json and docs/<suite>.md.
 */
const SUITES: Record<string, () => Promise<{ run(argv: string[]): Promise<number> }>> = {
  rules: () => import('./rules.js'),
  eft: () => import('./eft.js'),
  jailbreak: () => import('./jailbreak.js'),
  guard: () => import('./guard.js'),
};

const [name, ...rest] = process.argv.slice(2);
const load = name ? SUITES[name] : undefined;
if (!load) {
  console.error(`usage: npm run eval -- <suite>\nsuites: ${Object.keys(SUITES).join(', ')}`);
  process.exit(2);
}
process.exitCode = await (await load()).run(rest);
