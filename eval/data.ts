import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { z } from 'zod';

/** The public data folder (shared/data beside the project); `--data DIR` overrides it. */
export function dataDir(flag: string | undefined): string {
  return resolve(flag ?? join(import.meta.dirname, '..', '..', 'shared', 'data'));
}

export const MODERATION_CATEGORIES = ['S', 'H', 'V', 'HR', 'SH', 'S3', 'H2', 'V2'] as const;
const ModerationRow = z.looseObject({
  prompt: z.string(),
  ...Object.fromEntries(MODERATION_CATEGORIES.map((c) => [c, z.union([z.literal(0), z.literal(1)]).optional()])),
});
export type ModerationSample = { prompt: string; labels: Record<(typeof MODERATION_CATEGORIES)[number], boolean> };

/** OpenAI's moderation samples (safety/openai-moderation-samples-1680.jsonl.gz), or undefined when absent. */
export function moderationSamples(dir: string): ModerationSample[] | undefined {
  const file = join(dir, 'safety', 'openai-moderation-samples-1680.jsonl.gz');
  if (!existsSync(file)) return undefined;
  return gunzipSync(readFileSync(file))
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const row = ModerationRow.parse(JSON.parse(line)) as Record<string, unknown> & { prompt: string };
      const labels = Object.fromEntries(
        MODERATION_CATEGORIES.map((c) => [c, row[c] === 1]),
      ) as ModerationSample['labels'];
      return { prompt: row.prompt, labels };
    });
}

/**
 * An eval's `--data DIR` and `--model M` flags with the moderation samples they point at; undefined, after saying
 * so, when the data is absent (the evals skip rather than fail on a machine without the public data).
 */
export function moderationRun(
  suite: string,
  argv: string[],
): { samples: ModerationSample[]; model: string | undefined } | undefined {
  const { values } = parseArgs({
    args: argv,
    options: { data: { type: 'string' }, model: { type: 'string' } },
    strict: true,
  });
  const dir = dataDir(values.data);
  const samples = moderationSamples(dir);
  if (!samples) {
    console.log(`eval ${suite}: skipped, no moderation samples under ${dir} (pass --data DIR)`);
    return undefined;
  }
  return { samples, model: values.model };
}
