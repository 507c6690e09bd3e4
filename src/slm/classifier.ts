import type ort from 'onnxruntime-node';
import { ModelError, type ModelFolder, readModelFolder } from './folder.js';
import { logSoftmax } from './sampling.js';
import { int64, openSession, type SessionOptions } from './session.js';
import { TextTokenizer } from './tokenizer.js';

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

  private constructor(
    readonly folder: ModelFolder,
    private readonly session: ort.InferenceSession,
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

  /** Raw logits per text: [texts][labels]. Texts longer than the model's limit are truncated. */
  async logits(texts: string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    const encoded = texts.map((t) => {
      const ids = this.tokenizer.encode(t, true);
      return ids.length ? ids.slice(0, this.maxLength) : [this.tokenizer.padId];
    });
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
    const dims = [texts.length, len];
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
    return texts.map((_, i) => data.slice(i * n, (i + 1) * n));
  }

  async classify(texts: string[]): Promise<Classification[]> {
    const rows = await this.logits(texts);
    return rows.map((row) => {
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
    });
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
