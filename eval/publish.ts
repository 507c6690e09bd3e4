import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');

/**
 * Writes an evaluation's outputs: reports/eval-<suite>.json, docs/<suite>.md (default: the section without its
 * markers under a title) and the plugin README's dated section, between its `<!-- eval:start/end -->` markers.
 * Returns the report's path.
 */
export function publishEval(suite: string, json: unknown, section: string, doc?: string): string {
  const reportPath = join(ROOT, 'reports', `eval-${suite}.json`);
  mkdirSync(dirname(reportPath), { recursive: true });
  writeFileSync(reportPath, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(
    join(ROOT, 'docs', `${suite}.md`),
    doc ?? `# ${suite} plugin evaluation\n\n${section.replace(/<!-- eval:(start|end) -->\n?/g, '')}\n`,
  );
  const readme = join(ROOT, 'src', 'plugins', suite, 'README.md');
  const current = readFileSync(readme, 'utf8');
  if (!current.includes('<!-- eval:start -->')) throw new Error(`${readme} has no <!-- eval:start --> marker`);
  writeFileSync(readme, current.replace(/<!-- eval:start -->[\s\S]*<!-- eval:end -->/, section));
  return reportPath;
}
