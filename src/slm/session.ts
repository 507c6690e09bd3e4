import ort from 'onnxruntime-node';
import { ModelError } from './folder.js';

export interface SessionOptions {
  /** Threads inside one operator; default 2 (the machines this runs on have 2 cores). */
  threads?: number;
}

/** Opens an ONNX graph; a corrupt or truncated file is reported with its path, not as a native stack. */
export async function openSession(dir: string, path: string, opts: SessionOptions): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, {
      intraOpNumThreads: opts.threads ?? 2,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    });
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
export function inputDims(session: ort.InferenceSession, name: string): (number | undefined)[] | undefined {
  const meta = session.inputMetadata.find((m) => m.name === name);
  if (!meta?.isTensor) return undefined;
  return meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : undefined));
}

export { ort };
