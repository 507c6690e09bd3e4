/**
 * `npm run bench -- proxy`: throughput and latency of the fake upstream reached directly, through Tandem
 * (passthrough: one catch-all route, no plugins) and through the Portkey gateway, with JSON and SSE answers.
 *
 * Every server is a child process bound to 127.0.0.1, so each has its own event loop; the load generator
 * (autocannon) runs in this process. Writes reports/bench-proxy.json and docs/bench-proxy.md.
 *
 * Flags: --duration S (10), --connections N (32), --warmup S (2), --targets direct,tandem,portkey,
 * --modes json,stream, --no-build, --profile (Tandem under --cpu-prof; prints a summary, writes no report),
 * --enforce-goals (exit 1 when a goal is missed).
 */

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon, { type Result } from 'autocannon';
import { type Child, freePort, startChild, waitForHttp } from './lib/children.js';
import { formatProfile, reportPath, summariseProfile } from './lib/cpuprofile.js';
import {
  autocannonCounts,
  cpuMs,
  fmt,
  fmtLoad,
  type LoadCounts,
  listFlag,
  median,
  positive,
  sleep,
} from './lib/measure.js';
import { ensureBuild, ROOT, startFakeUpstream, startTandem } from './lib/tandemChild.js';
import { textTable } from './lib/textTable.js';

/** Generated files (patched Portkey start file, CPU profiles); outside the repo so linters and git never see them. */
const TMP = join(os.tmpdir(), 'tandem-bench');
const PORTKEY_VERSION = '1.15.2';

type TargetId = 'direct' | 'tandem' | 'portkey' | 'floor';
type Mode = 'json' | 'stream';
/** Run by default; `floor` (a minimal node:http pipe proxy, bench/floorProxyMain.ts) is opt-in via --targets. */
const TARGETS: TargetId[] = ['direct', 'tandem', 'portkey'];
const ALL_TARGETS: TargetId[] = [...TARGETS, 'floor'];
const MODES: Mode[] = ['json', 'stream'];

interface Target {
  id: TargetId;
  label: string;
  /** Full URL of the chat completions endpoint. */
  url: string;
  headers: Record<string, string>;
}

interface Row extends LoadCounts {
  target: TargetId;
  mode: Mode;
  p50: number;
  p99: number;
  /** CPU time (user+sys) the proxy process spent per completed request; for `direct`, the fake upstream's. */
  cpuMsPerReq: number | null;
  /** CPU share of one core the proxy process used during the run (1 = one full core). */
  cpuCores: number | null;
  flagged: boolean;
}

/** Ten words, so the fake streams `echo:` plus ten word chunks, a role chunk and a finish chunk. */
const PROMPT = 'please summarise the quarterly sales report for the northern region';
const EXPECTED = `echo: ${PROMPT}`;
const bodyFor = (stream: boolean) =>
  JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: PROMPT }], stream, max_tokens: 64 });

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '32' },
      warmup: { type: 'string', default: '2' },
      rounds: { type: 'string', default: '3' },
      targets: { type: 'string' },
      modes: { type: 'string', default: MODES.join(',') },
      'no-build': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'enforce-goals': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const duration = positive(values.duration, 'duration');
  const connections = positive(values.connections, 'connections');
  const rounds = positive(values.rounds, 'rounds');
  const warmup = Number(values.warmup);
  if (!Number.isFinite(warmup) || warmup < 0) throw new Error('--warmup must be a number >= 0');
  const profile = values.profile;
  const targets = listFlag(values.targets ?? (profile ? 'tandem' : TARGETS.join(',')), ALL_TARGETS, 'targets');
  const modes = listFlag(values.modes, MODES, 'modes');

  // Bounded: start-up, verification and every run, plus slack; past that everything is killed.
  const budgetMs = 120_000 + rounds * targets.length * modes.length * (warmup + duration + 15) * 1000;
  const watchdog = setTimeout(() => {
    console.error(`bench proxy: exceeded its ${Math.round(budgetMs / 1000)} s budget, killing children`);
    process.exit(1);
  }, budgetMs);
  watchdog.unref();

  const children: Child[] = [];
  try {
    if (targets.includes('tandem') && !values['no-build']) ensureBuild();
    mkdirSync(TMP, { recursive: true });

    const { url: fakeUrl, child: fake } = await startFakeUpstream();
    children.push(fake);

    const profDir = join(TMP, `prof-${Date.now()}`);
    const [tandem, portkey] = await Promise.all([
      targets.includes('tandem')
        ? startTandem({ upstream: fakeUrl, profDir: profile ? profDir : undefined })
        : undefined,
      targets.includes('portkey') ? startPortkey() : undefined,
    ]);
    if (tandem) children.push(tandem.child);
    if (portkey) children.push(portkey.child);
    let floor: Child | undefined;
    let floorUrl = '';
    if (targets.includes('floor')) {
      floor = startChild(
        'floor-proxy',
        process.execPath,
        ['--import', 'tsx', join(ROOT, 'bench', 'floorProxyMain.ts'), fakeUrl],
        { cwd: ROOT },
      );
      children.push(floor);
      floorUrl = (JSON.parse(await floor.waitForLine(/^\{"url"/, 30_000)) as { url: string }).url;
    }

    const all: Record<TargetId, Target | undefined> = {
      direct: {
        id: 'direct',
        label: 'fake upstream (direct)',
        url: `${fakeUrl}/chat/completions`,
        headers: baseHeaders(),
      },
      tandem: tandem && {
        id: 'tandem',
        label: 'Tandem passthrough',
        url: `${tandem.url}/v1/chat/completions`,
        headers: baseHeaders(),
      },
      portkey: portkey && {
        id: 'portkey',
        label: `Portkey gateway ${PORTKEY_VERSION}`,
        url: `${portkey.url}/v1/chat/completions`,
        headers: { ...baseHeaders(), 'x-portkey-provider': 'openai', 'x-portkey-custom-host': fakeUrl },
      },
      floor: floor && {
        id: 'floor',
        label: 'floor: node:http pipe proxy',
        url: `${floorUrl}/v1/chat/completions`,
        headers: baseHeaders(),
      },
    };
    const chosen = targets.map((t) => all[t] as Target);
    const pidOf: Record<TargetId, number | undefined> = {
      direct: fake.proc.pid,
      tandem: tandem?.child.proc.pid,
      portkey: portkey?.child.proc.pid,
      floor: floor?.proc.pid,
    };

    console.log(`fake upstream ${fakeUrl} (own process)`);
    for (const t of chosen) if (t.id !== 'direct') console.log(`${t.label.padEnd(24)} ${t.url}`);
    console.log(
      'Tandem logging is at warn (TANDEM_LOG_LEVEL=warn): no per-request log lines; Portkey runs with its defaults.',
    );
    console.log(
      'Tandem response cache is not exercised: the bench body has no temperature: 0, so nothing is cacheable.',
    );
    for (const t of chosen) for (const m of modes) console.log(`verified ${t.id} ${m}: ${await verify(t, m)}`);

    const loadBefore = os.loadavg();
    console.log(
      `\nload: ${connections} connections, ${duration} s per run after a ${warmup} s warm-up; ${os.cpus().length} CPUs, loadavg ${fmtLoad(loadBefore)}${profile ? '; PROFILING Tandem (numbers skewed)' : ''}`,
    );
    // Several rounds, the target order reversed every other round, and the median of each figure reported: on a
    // shared 2-core machine one 10 s run can land on a burst of someone else's load.
    const runs: Row[] = [];
    for (let round = 0; round < rounds; round++) {
      if (rounds > 1) console.log(`round ${round + 1} of ${rounds}`);
      const order = round % 2 === 0 ? chosen : [...chosen].reverse();
      for (const m of modes) {
        for (const t of order) {
          if (warmup > 0) await load(t, m, connections, warmup);
          const pid = pidOf[t.id];
          const cpu0 = cpuMs(pid);
          const t0 = performance.now();
          const res = await load(t, m, connections, duration);
          const cpu1 = cpuMs(pid);
          const wallMs = performance.now() - t0;
          const r = toRow(t.id, m, res);
          if (cpu0 !== null && cpu1 !== null) {
            r.cpuMsPerReq = r.ok2xx ? (cpu1 - cpu0) / r.ok2xx : null;
            r.cpuCores = (cpu1 - cpu0) / wallMs;
          }
          runs.push(r);
          console.log(
            `  ${t.id.padEnd(7)} ${m.padEnd(6)} ${fmt(r.rps, 0).padStart(7)} req/s  p50 ${fmt(r.p50, 1)} ms  p99 ${fmt(r.p99, 1)} ms  server CPU ${fmt(r.cpuMsPerReq ?? Number.NaN, 3)} ms/req (${fmt(r.cpuCores ?? Number.NaN, 2)} cores)${r.flagged ? `  FLAGGED ${problems(r)}` : ''}`,
          );
          await sleep(500);
        }
      }
    }
    const rows = medianRows(runs);
    const loadAfter = os.loadavg();

    const report = buildReport(rows, { duration, connections, warmup, loadBefore, loadAfter, fakeUrl, profile });
    report.json.rounds = rounds;
    report.json.runs = runs.map((r) => ({
      target: r.target,
      mode: r.mode,
      rps: r.rps,
      p50: r.p50,
      p99: r.p99,
      cpu_ms_per_req: r.cpuMsPerReq,
    }));
    console.log(`\n${table(rows)}\n`);
    console.log(report.summaryLines.join('\n'));

    if (profile && tandem) {
      await tandem.child.stop('SIGINT', 15_000);
      const prof = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (!prof) throw new Error(`no .cpuprofile written in ${profDir}`);
      const text = formatProfile(summariseProfile(join(profDir, prof), ROOT));
      const out = join(ROOT, 'reports', 'bench-proxy-profile.txt');
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(
        out,
        `Tandem CPU profile under autocannon load (${modes.join(' + ')}, ${connections} connections, ${duration} s each), ${new Date().toISOString()}\nprofile file: ${reportPath(join(profDir, prof))}\n\n${text}\n`,
      );
      console.log(`\n${text}\n\nwrote ${out} (profile mode writes no bench report)`);
    } else if (TARGETS.every((t) => targets.includes(t)) && modes.length === MODES.length) {
      writeReports(report.json, rows, report.summaryLines, { duration, connections, warmup });
    } else {
      console.log(
        '\n(partial run: --targets/--modes narrowed, reports/bench-proxy.json and docs/bench-proxy.md not written)',
      );
    }

    const flagged = runs.filter((r) => r.flagged);
    if (flagged.length) {
      console.error(
        `\nbench proxy: ${flagged.length} run(s) had errors/non-2xx/mismatches; their numbers are not trustworthy.`,
      );
      return 1;
    }
    if (values['enforce-goals'] && report.goalsMet === false) return 1;
    return 0;
  } finally {
    clearTimeout(watchdog);
    await Promise.all(children.map((c) => c.stop('SIGTERM', 5000)));
  }
}

const baseHeaders = () => ({ 'content-type': 'application/json', authorization: 'Bearer sk-bench-not-a-real-key' });

/**
 * Portkey's start file, patched at run time into a temp dir: bound to 127.0.0.1 and served with
 * `overrideGlobalObjects: false` (with @hono/node-server 1.19 its streaming otherwise fails with
 * `TypeError: immutable`). A resolve hook makes the copy's imports resolve from the package's own folder, so it
 * gets its nested dependencies (zod 3, @smithy) and not Tandem's.
 */
async function startPortkey(): Promise<{ url: string; child: Child }> {
  const pkgDir = join(ROOT, 'node_modules', '@portkey-ai', 'gateway');
  const version = (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
  if (version !== PORTKEY_VERSION)
    throw new Error(`expected @portkey-ai/gateway ${PORTKEY_VERSION}, found ${version}; recheck the start-file patch`);
  const original = join(pkgDir, 'build', 'start-server.js');
  const src = readFileSync(original, 'utf8');
  const serveCall = /(\w+)\(\{fetch:(\w+)\.fetch,port:(\w+)\}\)/g;
  const hits = src.match(serveCall) ?? [];
  if (hits.length !== 1)
    throw new Error(`Portkey start file: expected one serve({fetch,port}) call to patch, found ${hits.length}`);
  const patched = src.replace(
    serveCall,
    '$1({fetch:$2.fetch,port:$3,hostname:"127.0.0.1",overrideGlobalObjects:false})',
  );
  const copy = join(TMP, 'portkey-start-server.mjs');
  writeFileSync(copy, patched);
  writeFileSync(
    join(TMP, 'portkey-hooks.mjs'),
    `const COPY = ${JSON.stringify(pathToFileURL(copy).href)};
const ORIGINAL = ${JSON.stringify(pathToFileURL(original).href)};
export async function resolve(specifier, context, next) {
  return next(specifier, context.parentURL === COPY ? { ...context, parentURL: ORIGINAL } : context);
}
`,
  );
  writeFileSync(
    join(TMP, 'portkey-register.mjs'),
    `import { register } from 'node:module';\nregister('./portkey-hooks.mjs', import.meta.url);\n`,
  );
  const port = await freePort();
  const child = startChild(
    'portkey',
    process.execPath,
    ['--import', pathToFileURL(join(TMP, 'portkey-register.mjs')).href, copy, `--port=${port}`, '--headless'],
    { cwd: ROOT, env: { ...process.env, NODE_ENV: process.env.NODE_ENV ?? '' } },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/`, (s, b) => s === 200 && b.includes('AI Gateway'), 30_000, child);
  return { url, child };
}

/** One request before measuring: the echo must come back whole, and a stream must end with `data: [DONE]`. */
async function verify(t: Target, mode: Mode): Promise<string> {
  const fail = (why: string, body: string) => {
    throw new Error(`${t.label} ${mode} check failed: ${why}\nbody: ${body.slice(0, 600)}`);
  };
  const r = await fetch(t.url, {
    method: 'POST',
    headers: t.headers,
    body: bodyFor(mode === 'stream'),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await r.text();
  if (r.status !== 200) fail(`HTTP ${r.status}`, text);
  if (mode === 'json') {
    let content: unknown;
    try {
      content = (JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message
        ?.content;
    } catch {
      fail('not JSON', text);
    }
    if (content !== EXPECTED) fail(`content ${JSON.stringify(content)} is not ${JSON.stringify(EXPECTED)}`, text);
    return `200, ${text.length} bytes, echo ok`;
  }
  if (!(r.headers.get('content-type') ?? '').startsWith('text/event-stream'))
    fail(`content-type ${r.headers.get('content-type')}`, text);
  if (!streamDone(text)) fail('does not end with data: [DONE]', text);
  const events = text
    .split(/\n\n/)
    .map((e) => e.trim())
    .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
    .map((e) => JSON.parse(e.slice(6)) as { choices?: { delta?: { content?: string } }[] });
  const joined = events.map((e) => e.choices?.[0]?.delta?.content ?? '').join('');
  if (joined !== EXPECTED) fail(`streamed text ${JSON.stringify(joined)} is not ${JSON.stringify(EXPECTED)}`, text);
  const withContent = events.filter((e) => e.choices?.[0]?.delta?.content).length;
  return `200 SSE, ${events.length} data events (${withContent} with text) + [DONE], echo ok`;
}

const streamDone = (body: string) => body.trimEnd().endsWith('data: [DONE]');
const jsonOk = (body: string) => body.includes('"echo: ');

async function load(t: Target, mode: Mode, connections: number, seconds: number): Promise<Result> {
  const stream = mode === 'stream';
  const run = autocannon({
    url: t.url,
    method: 'POST',
    headers: t.headers,
    body: bodyFor(stream),
    connections,
    duration: seconds,
    timeout: 10,
    // Every response body is checked: a stream that ends early or with an error event counts as a mismatch.
    verifyBody: (b) => (stream ? streamDone(b) && !b.includes('"error"') : jsonOk(b)),
  });
  const hard = setTimeout(() => run.stop(), (seconds + 20) * 1000);
  try {
    return await run;
  } finally {
    clearTimeout(hard);
  }
}

function toRow(target: TargetId, mode: Mode, r: Result): Row {
  const row: Row = {
    target,
    mode,
    ...autocannonCounts(r),
    p50: r.latency.p50,
    p99: r.latency.p99,
    cpuMsPerReq: null,
    cpuCores: null,
    flagged: false,
  };
  row.flagged = row.non2xx + row.errors + row.timeouts + row.mismatches > 0 || row.ok2xx === 0;
  return row;
}

const problems = (r: Row) =>
  [
    `non2xx=${r.non2xx}`,
    `errors=${r.errors}`,
    `timeouts=${r.timeouts}`,
    `mismatches=${r.mismatches}`,
    `codes=${JSON.stringify(r.statusCodes)}`,
  ].join(' ');

function table(rows: Row[]): string {
  const head = ['target', 'mode', 'req/s', 'p50 ms', 'p99 ms', 'requests', 'CPU ms/req', 'errors/non-2xx', ''];
  const body = rows.map((r) => [
    r.target,
    r.mode,
    fmt(r.rps, 0),
    fmt(r.p50, 1),
    fmt(r.p99, 1),
    String(r.total),
    fmt(r.cpuMsPerReq ?? Number.NaN, 3),
    `${r.errors + r.timeouts}/${r.non2xx}${r.mismatches ? ` (+${r.mismatches} bad bodies)` : ''}`,
    r.flagged ? 'FLAGGED' : '',
  ]);
  return textTable(head, body, (i) => i >= 2 && i <= 6);
}

function mdTable(rows: Row[]): string {
  const out = [
    '| target | mode | req/s | p50 ms | p99 ms | requests | server CPU ms/req | errors / non-2xx |',
    '|---|---|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    out.push(
      `| ${r.target} | ${r.mode} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 1)} | ${fmt(r.p99, 1)} | ${r.total} | ${fmt(r.cpuMsPerReq ?? Number.NaN, 3)} | ${r.errors + r.timeouts} / ${r.non2xx}${r.flagged ? ' **FLAGGED**' : ''} |`,
    );
  }
  return out.join('\n');
}

interface RunInfo {
  duration: number;
  connections: number;
  warmup: number;
  loadBefore: number[];
  loadAfter: number[];
  fakeUrl: string;
  profile: boolean;
}

const round = (n: number | undefined, d = 2) =>
  n === undefined || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d;

function buildReport(rows: Row[], info: RunInfo) {
  const get = (t: TargetId, m: Mode) => rows.find((r) => r.target === t && r.mode === m);
  const json: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model,
    loadavg_before: info.loadBefore.map((x) => round(x)),
    loadavg_after: info.loadAfter.map((x) => round(x)),
    connections: info.connections,
    duration_s: info.duration,
    warmup_s: info.warmup,
    portkey_version: PORTKEY_VERSION,
    tandem_log_level: 'warn',
    prompt_words: PROMPT.split(' ').length,
  };
  const lines: string[] = [];
  let goalsMet: boolean | undefined = true;
  for (const m of MODES) {
    const sfx = m === 'json' ? '' : '_stream';
    for (const t of ALL_TARGETS) {
      const r = get(t, m);
      if (!r && t === 'floor') continue;
      json[`${t}${sfx}_rps`] = round(r?.rps, 1);
      json[`${t}${sfx}_p50_ms`] = round(r?.p50);
      json[`${t}${sfx}_p99_ms`] = round(r?.p99);
      json[`${t}${sfx}_requests`] = r?.total ?? null;
      json[`${t}${sfx}_cpu_ms_per_req`] = round(r?.cpuMsPerReq ?? undefined, 3);
      json[`${t}${sfx}_errors`] = r ? r.errors + r.timeouts : null;
      json[`${t}${sfx}_non2xx`] = r?.non2xx ?? null;
      json[`${t}${sfx}_mismatches`] = r?.mismatches ?? null;
    }
    const tan = get('tandem', m);
    const pk = get('portkey', m);
    const dir = get('direct', m);
    if (tan && pk) {
      const rpsRatio = tan.rps / pk.rps;
      const p99Ratio = tan.p99 / pk.p99;
      json[`tandem_vs_portkey${sfx}_rps_ratio`] = round(rpsRatio);
      json[`tandem_vs_portkey${sfx}_p99_ratio`] = round(p99Ratio, 3);
      const ok = rpsRatio >= 3 && p99Ratio <= 1 / 3;
      json[`goal${sfx}_met`] = ok;
      if (!ok) goalsMet = false;
      lines.push(
        `${m.padEnd(6)} Tandem/Portkey: req/s x${fmt(rpsRatio, 2)} (goal >= 3: ${rpsRatio >= 3 ? 'met' : 'NOT met'}), p99 x${fmt(p99Ratio, 3)} (goal <= 0.333: ${p99Ratio <= 1 / 3 ? 'met' : 'NOT met'})`,
      );
    } else goalsMet = undefined;
    if (tan && dir) {
      json[`tandem_vs_direct${sfx}_rps_ratio`] = round(tan.rps / dir.rps, 3);
      json[`tandem_overhead${sfx}_p50_ms`] = round(tan.p50 - dir.p50);
      lines.push(
        `${m.padEnd(6)} Tandem/direct:  req/s x${fmt(tan.rps / dir.rps, 3)} (${fmt((1 - tan.rps / dir.rps) * 100, 0)}% fewer), p50 +${fmt(tan.p50 - dir.p50, 1)} ms, p99 +${fmt(tan.p99 - dir.p99, 1)} ms`,
      );
    }
    if (tan?.cpuMsPerReq && pk?.cpuMsPerReq) {
      json[`tandem_vs_portkey${sfx}_cpu_per_req_ratio`] = round(tan.cpuMsPerReq / pk.cpuMsPerReq, 3);
      lines.push(
        `${m.padEnd(6)} server CPU per request: Tandem ${fmt(tan.cpuMsPerReq, 3)} ms, Portkey ${fmt(pk.cpuMsPerReq, 3)} ms (x${fmt(tan.cpuMsPerReq / pk.cpuMsPerReq, 2)}; less sensitive to other load on the machine)`,
      );
    }
    const fl = get('floor', m);
    if (fl && tan) {
      lines.push(
        `${m.padEnd(6)} floor (node:http pipe, nothing parsed): ${fmt(fl.rps, 0)} req/s, ${fmt(fl.cpuMsPerReq ?? Number.NaN, 3)} CPU ms/req; Tandem/floor req/s x${fmt(tan.rps / fl.rps, 2)}`,
      );
    }
    if (pk && dir)
      lines.push(
        `${m.padEnd(6)} Portkey/direct: req/s x${fmt(pk.rps / dir.rps, 3)}, p50 +${fmt(pk.p50 - dir.p50, 1)} ms`,
      );
  }
  const cpus = os.cpus().length;
  if ((info.loadBefore[0] ?? 0) > cpus * 0.5) {
    lines.push(
      `warning: load average ${fmtLoad(info.loadBefore)} on ${cpus} CPUs before the runs: other processes compete for CPU, absolute req/s are depressed; ratios and CPU ms/req are the steadier figures`,
    );
  }
  json.goals_met = goalsMet ?? null;
  json.flagged_runs = rows.filter((r) => r.flagged).map((r) => `${r.target}/${r.mode}`);
  json.rows = rows;
  json.note =
    'Load generator (autocannon), fake upstream, Tandem and Portkey share the same CPUs; ratios compare the proxies under identical conditions. Tandem logs at warn.';
  lines.push(
    `overall: ${goalsMet === undefined ? 'goals not evaluated (partial run)' : goalsMet ? 'goals MET' : 'goals NOT met'}`,
  );
  return { json, summaryLines: lines, goalsMet };
}

function writeReports(
  json: Record<string, unknown>,
  rows: Row[],
  summary: string[],
  o: { duration: number; connections: number; warmup: number },
) {
  const jsonPath = join(ROOT, 'reports', 'bench-proxy.json');
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  const mdPath = join(ROOT, 'docs', 'bench-proxy.md');
  mkdirSync(dirname(mdPath), { recursive: true });
  const date = String(json.date).slice(0, 10);
  writeFileSync(
    mdPath,
    `# Proxy benchmark (${date})

Generated by \`npm run bench -- proxy\` on ${json.date}; do not edit by hand.

POST /v1/chat/completions with a ${json.prompt_words}-word prompt to the test fake upstream (it echoes the prompt; a
stream has ${(json.prompt_words as number) + 3} data events plus \`[DONE]\`), reached directly, through Tandem (passthrough, one catch-all route, no
plugins, log level warn) and through Portkey gateway ${PORTKEY_VERSION}. autocannon, ${o.connections} connections, ${o.duration} s per run after a
${o.warmup} s warm-up, ${json.rounds} rounds (target order reversed every other round); the table gives the median of
each figure over the rounds (every run is in reports/bench-proxy.json under \`runs\`). Every server is its own process
on 127.0.0.1. Node ${json.node}, ${json.cpus} CPUs (${json.cpu_model}), load average
${(json.loadavg_before as number[]).join(' ')} before the runs.

${mdTable(rows)}

${summary.map((l) => `- ${l.replace(/\s+/g, ' ')}`).join('\n')}

Goal: Tandem at least 3x Portkey's req/s and at most 1/3 of its p99, for JSON and for streaming.
Raw numbers: \`reports/bench-proxy.json\`.
`,
  );
  console.log(`\nwrote ${jsonPath} and ${mdPath}`);
}

/** One row per target and mode: the median of each figure over the rounds, counts summed, flagged if any run was. */
function medianRows(runs: Row[]): Row[] {
  const groups = new Map<string, Row[]>();
  for (const r of runs) {
    const key = `${r.target} ${r.mode}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const first = g[0] as Row;
    const cpu = g.map((r) => r.cpuMsPerReq).filter((x): x is number => x !== null);
    const cores = g.map((r) => r.cpuCores).filter((x): x is number => x !== null);
    const sum = (f: (r: Row) => number) => g.reduce((a, r) => a + f(r), 0);
    return {
      ...first,
      rps: median(g.map((r) => r.rps)),
      p50: median(g.map((r) => r.p50)),
      p99: median(g.map((r) => r.p99)),
      total: sum((r) => r.total),
      ok2xx: sum((r) => r.ok2xx),
      non2xx: sum((r) => r.non2xx),
      errors: sum((r) => r.errors),
      timeouts: sum((r) => r.timeouts),
      mismatches: sum((r) => r.mismatches),
      cpuMsPerReq: cpu.length ? median(cpu) : null,
      cpuCores: cores.length ? median(cores) : null,
      flagged: g.some((r) => r.flagged),
    };
  });
}
