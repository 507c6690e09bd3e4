/**
 * A batch's key/value cache: per layer, keys and values of shape [batch, kvHeads, length, headDim], kept as the
 * Float32Arrays onnxruntime returned so a decode step feeds them back without a copy. Batch surgery (admitting new
 * sequences, dropping finished ones) copies, which is cheap beside a forward pass at these sizes.
 */
export interface KvCache {
  batch: number;
  length: number;
  heads: number;
  headDim: number;
  /** keys[i], values[i] for layer i. */
  keys: Float32Array[];
  values: Float32Array[];
}

export function emptyKv(layers: number, batch: number, heads: number, headDim: number): KvCache {
  return {
    batch,
    length: 0,
    heads,
    headDim,
    keys: Array.from({ length: layers }, () => new Float32Array(0)),
    values: Array.from({ length: layers }, () => new Float32Array(0)),
  };
}

function mapLayers(kv: KvCache, batch: number, length: number, f: (src: Float32Array) => Float32Array): KvCache {
  return { ...kv, batch, length, keys: kv.keys.map(f), values: kv.values.map(f) };
}

/** Keeps only the given batch rows, in that order. */
export function selectRows(kv: KvCache, rows: number[]): KvCache {
  const row = kv.heads * kv.length * kv.headDim;
  return mapLayers(kv, rows.length, kv.length, (src) => {
    const out = new Float32Array(rows.length * row);
    for (const [i, r] of rows.entries()) out.set(src.subarray(r * row, (r + 1) * row), i * row);
    return out;
  });
}

/** Re-shapes to `length` time steps: pads (with zeros, masked out by the caller) or drops on the left. */
export function resizeLeft(kv: KvCache, length: number): KvCache {
  if (length === kv.length) return kv;
  const { heads, headDim } = kv;
  const shift = length - kv.length;
  return mapLayers(kv, kv.batch, length, (src) => {
    const out = new Float32Array(kv.batch * heads * length * headDim);
    for (let bh = 0; bh < kv.batch * heads; bh++) {
      const from = bh * kv.length * headDim;
      const to = bh * length * headDim;
      if (shift >= 0) out.set(src.subarray(from, from + kv.length * headDim), to + shift * headDim);
      else out.set(src.subarray(from - shift * headDim, from + kv.length * headDim), to);
    }
    return out;
  });
}

/** Keeps the first `length` time steps (drops speculative positions that were not accepted). */
export function truncate(kv: KvCache, length: number): KvCache {
  if (length >= kv.length) return kv;
  const { heads, headDim } = kv;
  return mapLayers(kv, kv.batch, length, (src) => {
    const out = new Float32Array(kv.batch * heads * length * headDim);
    for (let bh = 0; bh < kv.batch * heads; bh++) {
      out.set(src.subarray(bh * kv.length * headDim, (bh * kv.length + length) * headDim), bh * length * headDim);
    }
    return out;
  });
}

/** Stacks two caches of equal length along the batch. */
export function concatRows(a: KvCache, b: KvCache): KvCache {
  if (a.length !== b.length) throw new Error('concatRows needs equal lengths');
  const out: KvCache = { ...a, batch: a.batch + b.batch, keys: [], values: [] };
  for (let l = 0; l < a.keys.length; l++) {
    for (const [dst, x, y] of [
      [out.keys, a.keys[l], b.keys[l]],
      [out.values, a.values[l], b.values[l]],
    ] as [Float32Array[], Float32Array, Float32Array][]) {
      const m = new Float32Array(x.length + y.length);
      m.set(x);
      m.set(y, x.length);
      dst.push(m);
    }
  }
  return out;
}
