import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';

// The recipes need Debian's torch to run, which a fresh machine lacks; parsing them needs only python3 and bash, so
// a broken edit to a recipe is caught here rather than at the next hour-long retrain.
const RECIPES = 'recipes';
const python = spawnSync('python3', ['--version']).status === 0;

test.skipIf(!python)('every Python recipe compiles (python3 -m py_compile; skipped where python3 is absent)', () => {
  const files = readdirSync(RECIPES).filter((f) => f.endsWith('.py'));
  expect(files.length).toBeGreaterThan(10);
  const out = mkdtempSync(join(tmpdir(), 'tandem-pyc-'));
  try {
    const script = [
      'import py_compile, sys, os',
      'for i, f in enumerate(sys.argv[2:]):',
      "    py_compile.compile(f, cfile=os.path.join(sys.argv[1], f'{i}.pyc'), doraise=True)",
    ].join('\n');
    const r = spawnSync('python3', ['-c', script, out, ...files.map((f) => join(RECIPES, f))], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('every shell and JavaScript recipe parses (bash -n, node --check)', () => {
  const files = readdirSync(RECIPES).filter((f) => f.endsWith('.sh') || f.endsWith('.mjs'));
  expect(files.length).toBeGreaterThan(3);
  for (const f of files) {
    const [cmd, flag] = f.endsWith('.sh') ? ['bash', '-n'] : [process.execPath, '--check'];
    const r = spawnSync(cmd as string, [flag as string, join(RECIPES, f)], { encoding: 'utf8' });
    expect(r.stderr, f).toBe('');
    expect(r.status, f).toBe(0);
  }
});
