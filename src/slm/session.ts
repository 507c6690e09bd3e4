import { createRequire } from 'node:module';
import { setImmediate as nextTurn } from 'node:timers/promises';
import ort from 'onnxruntime-node';
import type { Binding } from 'onnxruntime-node/dist/binding.js';
import { ModelError } from './folder.js';

export interface SessionOptions {
  /** Threads inside one operator; default 2 (the machines this runs on have 2 cores). */
  threads?: number;
  /**
   * Run through onnxruntime-node's native session directly (default), or through its public InferenceSession: the
   * same computation behind a setImmediate hop per call (the path taken anyway when the binding is not where
   * onnxruntime-node 1.30 keeps it).
   */
  direct?: boolean;
}

type Feeds = Record<string, ort.Tensor>;
type Outputs = Record<string, ort.OnnxValue>;

/** What the runtime needs of an opened graph (onnxruntime's InferenceSession has the same members). */
export interface GraphSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  /** The options the graph was opened with, as passed to onnxruntime (reported by the benchmarks). */
  readonly options: ort.InferenceSession.SessionOptions;
  run(feeds: Feeds): Promise<Outputs>;
  release(): Promise<void>;
}

/**
 * Longest stretch the main thread runs graphs without letting the event loop turn. onnxruntime-node's public run()
 * computes synchronously on the main thread anyway, behind a setImmediate hop and output re-wrapping; for this
 * family's models (0.2-0.5 ms per decode step) those two cost 10-15% of every step (npm run bench -- slm, ORT ms/step:
 * 0.51 ms through it against 0.44 ms direct for tandem-large-base, 0.24 against 0.20 for tandem-small-chat). The
 * direct path calls the same native run without them and lets I/O, timers and cancellations in at least every this
 * many milliseconds instead of on every call.
 */
const YIELD_MS = 2;
let lastYield = performance.now();

const types = [
  undefined,
  'float32',
  'uint8',
  'int8',
  'uint16',
  'int16',
  'int32',
  'int64',
  'string',
  'bool',
  'float16',
  'float64',
  'uint32',
  'uint64',
] as const;

/** onnxruntime-node's native binding (the object its own backend wraps), when this install has it where 1.30 does. */
function nativeBinding(): {
  binding: { InferenceSession: Binding.InferenceSessionConstructor };
  initOrt: () => void;
} | null {
  try {
    return createRequire(import.meta.url)('onnxruntime-node/dist/binding.js');
  } catch {
    return null;
  }
}

/** The same conversion onnxruntime-node's backend applies to the binding's metadata. */
function metadata(raw: readonly Binding.ValueMetadata[]): ort.InferenceSession.ValueMetadata[] {
  return raw.map((m) => {
    const type = types[m.type];
    if (!m.isTensor || type === undefined)
      return { name: m.name, isTensor: false } as ort.InferenceSession.ValueMetadata;
    const shape = m.shape.map((d, i) => (d === -1 ? (m.symbolicDimensions[i] as string) : d));
    return { name: m.name, isTensor: true, type, shape } as ort.InferenceSession.ValueMetadata;
  });
}

class DirectSession implements GraphSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  private readonly fetches: Record<string, null>;

  constructor(
    private readonly native: Binding.InferenceSession,
    readonly options: ort.InferenceSession.SessionOptions,
  ) {
    this.inputNames = native.inputMetadata.map((m) => m.name);
    this.outputNames = native.outputMetadata.map((m) => m.name);
    this.inputMetadata = metadata(native.inputMetadata);
    this.fetches = Object.fromEntries(this.outputNames.map((n) => [n, null]));
  }

  async run(feeds: Feeds): Promise<Outputs> {
    if (performance.now() - lastYield > YIELD_MS) {
      await nextTurn();
      lastYield = performance.now();
    }
    for (const name of this.inputNames) if (!(name in feeds)) throw new Error(`input '${name}' is missing in 'feeds'.`);
    return this.native.run(feeds, this.fetches, {});
  }

  async release(): Promise<void> {
    this.native.dispose();
  }
}

/** Opens an ONNX graph; a corrupt or truncated file is reported with its path, not as a native stack. */
export async function openSession(dir: string, path: string, opts: SessionOptions): Promise<GraphSession> {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: opts.threads ?? 2,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  };
  try {
    const native = opts.direct === false ? null : nativeBinding();
    if (!native) return Object.assign(await ort.InferenceSession.create(path, options), { options });
    native.initOrt();
    const session = new native.binding.InferenceSession();
    // Off the current tick, as the public create is: loading a large graph should not stall the caller's tick.
    await nextTurn();
    session.loadModel(path, options);
    return new DirectSession(session, options);
  } catch (err) {
    const why = (err as Error).message.split('\n')[0]?.slice(0, 300);
    throw new ModelError(dir, `${path.slice(dir.length + 1)} could not be loaded by onnxruntime (${why})`);
  }
}

/** An int64 tensor from rows of numbers (no intermediate flat array). */
export function int64(rows: readonly (readonly number[])[], dims: number[]): ort.Tensor {
  const data = new BigInt64Array(dims.reduce((a, b) => a * b, 1));
  let i = 0;
  for (const row of rows) {
    for (const v of row) {
      // Masks are mostly 0 and 1: constants skip a BigInt conversion per element on every decode step.
      data[i++] = v === 1 ? 1n : v === 0 ? 0n : BigInt(v);
    }
  }
  return new ort.Tensor('int64', data, dims);
}

export function bool(value: boolean): ort.Tensor {
  return new ort.Tensor('bool', [value], [1]);
}

export function float32(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

/** Dimensions of an input from the graph's metadata: numbers where fixed, undefined where symbolic. */
export function inputDims(session: GraphSession, name: string): (number | undefined)[] | undefined {
  const meta = session.inputMetadata.find((m) => m.name === name);
  if (!meta?.isTensor) return undefined;
  return meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : undefined));
}

export { ort };
