import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

/** A model folder that cannot be used; the message names the file or tensor at fault. */
export class ModelError extends Error {
  constructor(
    readonly folder: string,
    message: string,
  ) {
    super(`${folder}: ${message}`);
  }
}

/** The fields of a Hugging Face config.json that Tandem reads; the rest is kept but ignored. */
export const ModelConfigSchema = z.looseObject({
  model_type: z.string().optional(),
  architectures: z.array(z.string()).optional(),
  vocab_size: z.number().int().positive().optional(),
  hidden_size: z.number().int().positive().optional(),
  num_attention_heads: z.number().int().positive().optional(),
  num_key_value_heads: z.number().int().positive().optional(),
  num_hidden_layers: z.number().int().positive().optional(),
  head_dim: z.number().int().positive().optional(),
  max_position_embeddings: z.number().int().positive().optional(),
  n_positions: z.number().int().positive().optional(),
  bos_token_id: z.union([z.number().int(), z.null()]).optional(),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int()), z.null()]).optional(),
  pad_token_id: z.union([z.number().int(), z.null()]).optional(),
  id2label: z.record(z.string(), z.string()).optional(),
  problem_type: z.string().optional(),
});
export type ModelConfig = z.infer<typeof ModelConfigSchema>;

const GenerationConfigSchema = z.looseObject({
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).optional(),
  max_new_tokens: z.number().int().positive().optional(),
  temperature: z.number().optional(),
  top_p: z.number().optional(),
  top_k: z.number().int().optional(),
  min_p: z.number().min(0).max(1).optional(),
  do_sample: z.boolean().optional(),
  repetition_penalty: z.number().positive().optional(),
});
export type GenerationConfig = z.infer<typeof GenerationConfigSchema>;

export interface ModelFolder {
  dir: string;
  config: ModelConfig;
  generation: GenerationConfig;
  tokenizerJson: object;
  tokenizerConfig: Record<string, unknown>;
  /** Path of the ONNX graph to load. */
  onnxPath: string;
}

/** Where Optimum exports (and transformers.js) put the graph, in order of preference. */
const ONNX_CANDIDATES = [
  'model.onnx',
  'decoder_model_merged.onnx',
  'onnx/model.onnx',
  'onnx/decoder_model_merged.onnx',
  'decoder_model.onnx',
  'onnx/decoder_model.onnx',
];

/** Suffixes transformers.js and Optimum give the non-fp32 copies of a graph (model_quantized.onnx, model_O2.onnx, ...). */
const VARIANT = /^(.+?)_(quantized|fp16|bf16|int8|uint8|int4|uint4|q4|q4f16|q8|bnb4|O[1-4]|optimized)$/;

/** A graph file's variant: 'fp32' for model.onnx, 'q4' for onnx/model_q4.onnx. */
export function graphVariant(path: string): string {
  const stem = path.replace(/^onnx\//, '').replace(/\.onnx$/, '');
  return VARIANT.exec(stem)?.[2] ?? 'fp32';
}

/**
 * Variant copies of the graphs a generative or classifier folder loads (onnx/model_q4.onnx, ...): a folder pulled
 * with only quantized graphs has no plain model.onnx, and one such graph can be loaded without being named.
 */
function variantGraphs(dir: string): string[] {
  const out: string[] = [];
  for (const sub of ['', 'onnx/']) {
    if (!existsSync(join(dir, sub))) continue;
    for (const f of readdirSync(join(dir, sub))) {
      const stem = f.replace(/\.onnx$/, '');
      if (f.endsWith('.onnx') && /^(model|decoder_model_merged)$/.test(VARIANT.exec(stem)?.[1] ?? ''))
        out.push(sub + f);
    }
  }
  return out.sort();
}

function readJson(dir: string, file: string, required: boolean): unknown {
  const path = join(dir, file);
  if (!existsSync(path)) {
    if (required) throw new ModelError(dir, `missing ${file}`);
    return undefined;
  }
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ModelError(dir, `${file} is not valid JSON (${(err as Error).message})`);
  }
}

function parse<T>(dir: string, file: string, schema: z.ZodType<T>, value: unknown): T {
  const res = schema.safeParse(value ?? {});
  if (res.success) return res.data;
  const issue = res.error.issues[0];
  throw new ModelError(dir, `${file}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid'}`);
}

/** Reads a model folder in the Hugging Face Optimum ONNX layout, refusing it with the missing file named. */
export function readModelFolder(dir: string, onnxFile?: string): ModelFolder {
  if (!existsSync(dir)) throw new ModelError(dir, 'model folder does not exist');
  const config = parse(dir, 'config.json', ModelConfigSchema, readJson(dir, 'config.json', true));
  const generation = parse(
    dir,
    'generation_config.json',
    GenerationConfigSchema,
    readJson(dir, 'generation_config.json', false),
  );
  const tokenizerJson = readJson(dir, 'tokenizer.json', true) as object;
  const tokenizerConfig = (readJson(dir, 'tokenizer_config.json', false) ?? {}) as Record<string, unknown>;
  const special = (readJson(dir, 'special_tokens_map.json', false) ?? {}) as Record<string, unknown>;
  // A chat template may also live in its own file (newer exports).
  const templatePath = join(dir, 'chat_template.jinja');
  if (!tokenizerConfig.chat_template && existsSync(templatePath)) {
    tokenizerConfig.chat_template = readFileSync(templatePath, 'utf8');
  }
  for (const [k, v] of Object.entries(special)) if (tokenizerConfig[k] === undefined) tokenizerConfig[k] = v;
  const candidates = onnxFile ? [onnxFile] : ONNX_CANDIDATES;
  let found = candidates.find((f) => existsSync(join(dir, f)));
  if (!found && !onnxFile) {
    const variants = variantGraphs(dir);
    if (variants.length > 1)
      throw new ModelError(dir, `several ONNX graphs (${variants.join(', ')}): choose one with onnxFile`);
    found = variants[0];
  }
  if (!found) throw new ModelError(dir, `missing ONNX graph: none of ${candidates.join(', ')}`);
  return { dir, config, generation, tokenizerJson, tokenizerConfig, onnxPath: join(dir, found) };
}

/** End-of-sequence ids from generation_config.json, else config.json. */
export function eosIds(folder: ModelFolder): number[] {
  const raw = folder.generation.eos_token_id ?? folder.config.eos_token_id;
  if (raw === null || raw === undefined) return [];
  return Array.isArray(raw) ? raw : [raw];
}

export function contextLength(folder: ModelFolder): number {
  const c = folder.config;
  const fromTokenizer = folder.tokenizerConfig.model_max_length;
  return (
    c.max_position_embeddings ??
    c.n_positions ??
    (typeof fromTokenizer === 'number' && fromTokenizer < 1e9 ? fromTokenizer : 2048)
  );
}
