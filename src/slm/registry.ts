import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ModelSpec, ModelSpecSchema } from '../proxy/config.js';
import { CausalLM } from './causalLM.js';
import { Classifier } from './classifier.js';
import { GenerationEngine } from './engine.js';
import { ModelError, readModelFolder } from './folder.js';
import { defaultModelsDir } from './hub.js';
import { attachPrefixCache, PrefixCache } from './prefixCache.js';

/** The models shipped with Tandem (models/ at the package root), found from this file in src/ or dist/. */
export const BUILTIN_MODELS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../models');

export interface LoadedCausal {
  lm: CausalLM;
  engine: GenerationEngine;
}

/** A loaded generative model's queue and running totals, as /metrics reports them. */
export interface LocalModelStats {
  model: string;
  active: number;
  waiting: number;
  promptTokens: number;
  cachedPromptTokens: number;
  generatedTokens: number;
  refused: number;
}

/** The config's defaults, for models not named in it (shipped ones, paths). */
const { path: _, ...DEFAULTS } = ModelSpecSchema.parse({ path: '.' });

/** Graphs smaller than this run on one thread unless configured (see ModelSpecSchema.threads). */
const SMALL_GRAPH_BYTES = 8 * 1024 * 1024;

/** defaultThreads' rule in words, for reports that state which thread counts they ran with. */
export const DEFAULT_THREADS_RULE = `1 for graphs under ${SMALL_GRAPH_BYTES / 2 ** 20} MB, else 2`;

/** The intra-op threads a model folder gets unless configured: 1 for graphs under SMALL_GRAPH_BYTES, else 2. */
export function defaultThreads(dir: string, onnxFile?: string): number {
  try {
    return statSync(readModelFolder(dir, onnxFile).onnxPath).size < SMALL_GRAPH_BYTES ? 1 : 2;
  } catch {
    // The load that follows reports what is wrong with the folder.
    return 2;
  }
}

export class UnknownModelError extends Error {
  constructor(
    readonly model: string,
    known: string[],
  ) {
    super(`No local model named '${model}'; known: ${known.join(', ') || '(none)'}`);
  }
}

/**
 * Local models by name: those in the config, the ones shipped in models/, and any folder given by path. Loading is
 * lazy (and once: concurrent first requests share one load), with a warm-up run.
 */
export class ModelRegistry {
  private readonly specs = new Map<string, ModelSpec>();
  private readonly causal = new Map<string, Promise<LoadedCausal>>();
  /** The causal models loaded so far, by folder, under the name they were first asked for. */
  private readonly loadedCausal = new Map<string, { model: string; engine: GenerationEngine }>();
  private readonly classifiers = new Map<string, Promise<Classifier>>();

  constructor(
    configured: Record<string, ModelSpec> = {},
    baseDir = process.cwd(),
    builtinDir = BUILTIN_MODELS_DIR,
    pulledDir = defaultModelsDir(),
  ) {
    // Pulled models are known as org/name, as on the hub.
    if (existsSync(pulledDir)) {
      for (const org of readdirSync(pulledDir)) {
        const orgDir = join(pulledDir, org);
        if (!statSync(orgDir).isDirectory()) continue;
        for (const name of readdirSync(orgDir)) {
          if (existsSync(join(orgDir, name, 'config.json')))
            this.specs.set(`${org}/${name}`, { path: join(orgDir, name), ...DEFAULTS });
        }
      }
    }
    if (existsSync(builtinDir)) {
      for (const name of readdirSync(builtinDir)) {
        if (existsSync(join(builtinDir, name, 'config.json')))
          this.specs.set(name, { path: join(builtinDir, name), ...DEFAULTS });
      }
    }
    for (const [name, spec] of Object.entries(configured)) {
      this.specs.set(name, { ...spec, path: isAbsolute(spec.path) ? spec.path : resolve(baseDir, spec.path) });
    }
  }

  names(): string[] {
    return [...this.specs.keys()].sort();
  }

  /** A name from the registry, or a folder path (absolute, or starting with . or /). */
  spec(nameOrPath: string): ModelSpec {
    const known = this.specs.get(nameOrPath);
    if (known) return known;
    if (nameOrPath.startsWith('/') || nameOrPath.startsWith('.')) return { path: resolve(nameOrPath), ...DEFAULTS };
    throw new UnknownModelError(nameOrPath, this.names());
  }

  /** What kind of model a folder holds, from config.json's architectures. */
  kind(nameOrPath: string): 'causal' | 'classifier' {
    const folder = readModelFolder(this.spec(nameOrPath).path);
    const arch = folder.config.architectures?.[0] ?? '';
    return /ForSequenceClassification$/.test(arch) ? 'classifier' : 'causal';
  }

  private threads(spec: ModelSpec): number {
    return spec.threads ?? defaultThreads(spec.path, spec.onnxFile);
  }

  causalLM(nameOrPath: string): Promise<LoadedCausal> {
    const spec = this.spec(nameOrPath);
    let p = this.causal.get(spec.path);
    if (!p) {
      p = CausalLM.load(spec.path, { threads: this.threads(spec), onnxFile: spec.onnxFile }).then((lm) => {
        // One prefix cache per model, shared by its engine and by EFT's tracks over it.
        const prefixCache = spec.prefixCacheMB > 0 ? new PrefixCache(spec.prefixCacheMB * 2 ** 20) : undefined;
        if (prefixCache) attachPrefixCache(lm, prefixCache);
        const engine = new GenerationEngine(lm, {
          maxBatch: spec.maxBatch,
          queueLimit: spec.queueLimit,
          promptLookup: spec.promptLookup,
          prefixCache,
          kvBudgetBytes: spec.kvBudgetMB * 2 ** 20,
          prefillChunkTokens: spec.prefillChunkTokens,
        });
        return { lm, engine };
      });
      const model = this.specs.has(nameOrPath) ? nameOrPath : basename(spec.path);
      p.then(
        ({ engine }) => void this.loadedCausal.set(spec.path, { model, engine }),
        // A failed load is not cached: the next request tries again (the file may have been fixed).
        () => this.causal.delete(spec.path),
      );
      this.causal.set(spec.path, p);
    }
    return p;
  }

  /** Queue and totals of every generative model loaded so far. */
  stats(): LocalModelStats[] {
    return [...this.loadedCausal.values()].map(({ model, engine }) => ({
      model,
      ...engine.load,
      ...engine.totals,
    }));
  }

  classifier(nameOrPath: string): Promise<Classifier> {
    const spec = this.spec(nameOrPath);
    let p = this.classifiers.get(spec.path);
    if (!p) {
      p = Classifier.load(spec.path, { threads: this.threads(spec), onnxFile: spec.onnxFile });
      p.catch(() => this.classifiers.delete(spec.path));
      this.classifiers.set(spec.path, p);
    }
    return p;
  }

  async close(): Promise<void> {
    const loaded = await Promise.allSettled([...this.causal.values()]);
    const cls = await Promise.allSettled([...this.classifiers.values()]);
    this.loadedCausal.clear();
    await Promise.all([
      ...loaded.map((r) => (r.status === 'fulfilled' ? r.value.lm.release() : undefined)),
      ...cls.map((r) => (r.status === 'fulfilled' ? r.value.release() : undefined)),
    ]);
  }
}

export { ModelError };
