import type ort from 'onnxruntime-node';
import { ModelError, type ModelFolder, readModelFolder } from './folder.js';
import { logSoftmax } from './sampling.js';
import { type GraphSession, int64, openSession, type SessionOptions } from './session.js';
import { TextTokenizer } from './tokenizer.js';

/** Padded tokens (rows x longest row) one shared run may hold; a call bigger than this runs alone. */
const BATCH_TOKENS = 16_384;

/** A logitsOfIds call waiting for a run. */
interface PendingCall {
  rows: number[][];
  resolve: (v: Float32Array[]) => void;
  reject: (e: unknown) => void;
}

export interface Classification {
  /** Label with the highest score. */
  label: string;
  /** Score per label: softmax probabilities, or per-label sigmoids for multi-label models. */
  scores: Record<string, number>;
}

/**
 * A sequence classifier in the Optimum layout: `input_ids`, `attention_mask`, optional `token_type_ids` -> `logits`
 * [batch, labels], label names from config.json's id2label.
 */
export class Classifier {
  readonly labels: string[];
  readonly multiLabel: boolean;
  readonly maxLength: number;
  private readonly tokenizer: TextTokenizer;
  private readonly inputs: Set<string>;
  private readonly specials: { prefix: number[]; suffix: number[] };

  private constructor(
    readonly folder: ModelFolder,
    private readonly session: GraphSession,
  ) {
    const dir = folder.dir;
    this.inputs = new Set(session.inputNames);
    for (const need of ['input_ids']) {
      if (!this.inputs.has(need))
        throw new ModelError(dir, `graph has no input '${need}' (inputs: ${session.inputNames.join(', ')})`);
    }
    const unexpected = session.inputNames.filter((n) => !['input_ids', 'attention_mask', 'token_type_ids'].includes(n));
    if (unexpected.length) throw new ModelError(dir, `graph has unexpected inputs: ${unexpected.join(', ')}`);
    if (!session.outputNames.includes('logits'))
      throw new ModelError(dir, `graph has no output 'logits' (outputs: ${session.outputNames.join(', ')})`);
    const id2label = folder.config.id2label;
    if (!id2label) throw new ModelError(dir, 'config.json has no id2label');
    this.labels = Object.entries(id2label)
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([, l]) => l);
    this.multiLabel = folder.config.problem_type === 'multi_label_classification';
    this.tokenizer = new TextTokenizer(folder);
    // Special tokens the tokenizer wraps a text in (BERT's [CLS] ... [SEP]; none for the family's models).
    const bare = this.tokenizer.encode('a', false);
    const full = this.tokenizer.encode('a', true);
    const at = full.findIndex((_, i) => bare.every((id, j) => full[i + j] === id));
    this.specials =
      at < 0 ? { prefix: [], suffix: [] } : { prefix: full.slice(0, at), suffix: full.slice(at + bare.length) };
    const fromTok = folder.tokenizerConfig.model_max_length;
    this.maxLength =
      folder.config.max_position_embeddings ?? (typeof fromTok === 'number' && fromTok < 1e6 ? fromTok : 512);
  }

  static async load(dir: string, opts: SessionOptions & { onnxFile?: string } = {}): Promise<Classifier> {
    const folder = readModelFolder(dir, opts.onnxFile);
    const c = new Classifier(folder, await openSession(dir, folder.onnxPath, opts));
    await c.classify(['warm-up']);
    return c;
  }

  /**
   * Token ids the model reads for a text, cut into windows of at most `size` tokens (default and limit: the model's
   * `maxLength`; special tokens included) that overlap by a quarter, so text at one window's edge is whole in the
   * next. Nothing is dropped: a long text gives more windows.
   */
  windows(text: string, size = this.maxLength): number[][] {
    const ids = this.tokenizer.encode(text, false);
    const { prefix, suffix } = this.specials;
    const room = Math.max(1, Math.min(size, this.maxLength) - prefix.length - suffix.length);
    const overlap = Math.floor(room / 4);
    const step = room - overlap;
    const out: number[][] = [];
    for (let at = 0; ; at += step) {
      out.push([...prefix, ...ids.slice(at, at + room), ...suffix]);
      if (at + room >= ids.length) break;
    }
    return out;
  }

  /** Raw logits per text: [texts][labels]. Texts longer than the model's limit are truncated (see `windows`). */
  async logits(texts: string[]): Promise<Float32Array[]> {
    return this.logitsOfIds(
      texts.map((t) => {
        const ids = this.tokenizer.encode(t, true);
        return ids.slice(0, this.maxLength);
      }),
    );
  }

  /**
   * Raw logits per row of token ids (each at most `maxLength` long). Calls that arrive while a run is in flight wait
   * and share the next run (up to BATCH_TOKENS padded tokens): under load a guard classifies every request's prompt,
   * and one run of 16 rows costs about what 3 single-row runs do.
   */
  async logitsOfIds(rows: number[][]): Promise<Float32Array[]> {
    if (rows.length === 0) return [];
    for (const ids of rows)
      if (ids.length > this.maxLength)
        throw new RangeError(`classifier reads at most ${this.maxLength} tokens, got ${ids.length}`);
    return new Promise((resolve, reject) => {
      this.pending.push({ rows, resolve, reject });
      this.pump();
    });
  }

  private readonly pending: PendingCall[] = [];
  private running = false;

  private pump(): void {
    const first = this.running ? undefined : this.pending.shift();
    if (!first) return;
    this.running = true;
    const batch = [first];
    let count = first.rows.length;
    let width = Math.max(...first.rows.map((r) => r.length));
    // Without an attention mask, padding would change a row's logits: such a model runs each call alone.
    while (this.pending[0] && this.inputs.has('attention_mask')) {
      const next = this.pending[0];
      const w = Math.max(width, ...next.rows.map((r) => r.length));
      if ((count + next.rows.length) * w > BATCH_TOKENS) break;
      batch.push(next);
      this.pending.shift();
      count += next.rows.length;
      width = w;
    }
    this.run(batch.flatMap((b) => b.rows))
      .then((out) => {
        let at = 0;
        for (const b of batch) {
          b.resolve(out.slice(at, at + b.rows.length));
          at += b.rows.length;
        }
      })
      .catch((err: unknown) => {
        for (const b of batch) b.reject(err);
      })
      .finally(() => {
        this.running = false;
        this.pump();
      });
  }

  /** Runs of the graph so far (calls that shared a run count once). */
  runs = 0;

  private async run(rows: number[][]): Promise<Float32Array[]> {
    this.runs++;
    const encoded = rows.map((ids) => (ids.length ? ids : [this.tokenizer.padId]));
    const len = Math.max(...encoded.map((e) => e.length));
    const left = this.tokenizer.paddingSide === 'left';
    const pad = (row: number[], v: number) => {
      const fill = Array(len - row.length).fill(v);
      return left ? [...fill, ...row] : [...row, ...fill];
    };
    const ids = encoded.map((e) => pad(e, this.tokenizer.padId));
    const mask = encoded.map((e) =>
      pad(
        e.map(() => 1),
        0,
      ),
    );
    const dims = [rows.length, len];
    const feeds: Record<string, ort.Tensor> = { input_ids: int64(ids, dims) };
    if (this.inputs.has('attention_mask')) feeds.attention_mask = int64(mask, dims);
    if (this.inputs.has('token_type_ids'))
      feeds.token_type_ids = int64(
        ids.map((r) => r.map(() => 0)),
        dims,
      );
    const out = await this.session.run(feeds);
    const data = (out.logits as ort.Tensor).data as Float32Array;
    const n = this.labels.length;
    return rows.map((_, i) => data.slice(i * n, (i + 1) * n));
  }

  /** Probabilities per label for rows of token ids (from `windows`). */
  async classifyIds(rows: number[][]): Promise<Classification[]> {
    return (await this.logitsOfIds(rows)).map((row) => this.toClassification(row));
  }

  async classify(texts: string[]): Promise<Classification[]> {
    return (await this.logits(texts)).map((row) => this.toClassification(row));
  }

  private toClassification(row: Float32Array): Classification {
    const probs = this.multiLabel
      ? Array.from(row, (x) => 1 / (1 + Math.exp(-x)))
      : Array.from(logSoftmax(row), Math.exp);
    const scores: Record<string, number> = {};
    let best = 0;
    probs.forEach((p, i) => {
      scores[this.labels[i] as string] = p;
      if (p > (probs[best] as number)) best = i;
    });
    return { label: this.labels[best] as string, scores };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
