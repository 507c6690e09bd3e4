import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { defaultModelsDir, HubError, type PulledFile, pullModel, repoDir } from '../slm/hub.js';

interface PullFlags {
  revision: string;
  endpoint?: string;
  dir?: string;
  tokenEnv: string;
  dtype?: string;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

function note(f: PulledFile): string {
  if (f.size > 0 && f.resumedFrom === f.size) return ' (already present)';
  return f.resumedFrom > 0 ? ` (resumed at ${bytes(f.resumedFrom)})` : '';
}

/** One bar per file on stderr. cli-progress draws nothing when stderr is not a terminal, so logs stay clean. */
function progressBars() {
  const multi = new cliProgress.MultiBar(
    {
      stream: process.stderr,
      // The name first: a terminal narrower than the line cuts its end.
      format: ' {file} {bar} {percentage}% | {done}/{size}',
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  return {
    update(e: { file: string; received: number; total: number | undefined }) {
      // An unknown total grows with what arrived, so the bar stays meaningful instead of dividing by zero.
      const total = Math.max(e.total ?? e.received, 1);
      const payload = { file: e.file, done: bytes(e.received), size: e.total === undefined ? '?' : bytes(e.total) };
      let bar = bars.get(e.file);
      if (!bar) {
        bar = multi.create(total, e.received, payload);
        bars.set(e.file, bar);
      }
      bar.setTotal(total);
      bar.update(e.received, payload);
    },
    stop: () => multi.stop(),
  };
}

export function addPullCommand(models: Command): void {
  models
    .command('pull <repo>')
    .description('download a model folder (ONNX, Optimum layout) from the Hugging Face hub or a compatible mirror')
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .option('--endpoint <url>', 'hub URL (env HF_ENDPOINT; default https://huggingface.co)')
    .option(
      '--dir <dir>',
      'models folder; the model goes to <dir>/<org>/<name> (default $TANDEM_HOME/models or ~/.cache/tandem/models)',
    )
    .option('--token-env <name>', 'environment variable holding the hub token', 'HF_TOKEN')
    .option(
      '--dtype <variant>',
      'graph variant as transformers.js names them (fp32, quantized, q8, q4, fp16, ...); default: fp32, else the ' +
        'first of quantized, q8, uint8, int8, q4, bnb4, fp16, q4f16 the repo has',
    )
    .action(async (repo: string, flags: PullFlags) => {
      const controller = new AbortController();
      // Ctrl-C keeps the .incomplete files, so the next pull resumes where this one stopped.
      const onSigint = () => controller.abort();
      process.once('SIGINT', onSigint);
      const bars = progressBars();
      let pulled: PulledFile[];
      let dest: string;
      try {
        dest = repoDir(flags.dir ?? defaultModelsDir(), repo);
        pulled = await pullModel({
          repo,
          revision: flags.revision,
          endpoint: flags.endpoint,
          dest,
          token: process.env[flags.tokenEnv] || undefined,
          dtype: flags.dtype,
          signal: controller.signal,
          onProgress: (e) => bars.update(e),
        });
      } catch (err) {
        bars.stop();
        if (!(err instanceof HubError)) throw err;
        console.error(err.kind === 'aborted' ? `${err.message}; run the same command again to resume` : err.message);
        process.exit(err.kind === 'aborted' ? 130 : 1);
      } finally {
        process.removeListener('SIGINT', onSigint);
      }
      bars.stop();
      for (const f of pulled) {
        console.error(`${f.path}  ${bytes(f.size)}${note(f)}`);
      }
      console.log(dest);
    });
}
