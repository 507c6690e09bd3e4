// Verifies exported models in onnxruntime-node against the PyTorch parity fixtures (models/<name>/parity.json):
//  (a) full prompt, no cache (past length 0); (b) prefix then single tokens with the KV cache;
//  (c) a left-padded batch; plus a greedy decode with the cache compared with torch's greedy ids.
// Usage: node recipes/check_onnx.mjs [modelDir ...]   (default: every models/* folder with parity.json)
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import ort from 'onnxruntime-node';

const here = dirname(fileURLToPath(import.meta.url));
const modelsDir = process.env.TANDEM_MODELS ?? join(here, '..', 'models');
const dirs = process.argv.length > 2
  ? process.argv.slice(2)
  : readdirSync(modelsDir)
      .map((d) => join(modelsDir, d))
      .filter((d) => existsSync(join(d, 'parity.json')) && existsSync(join(d, 'config.json')))
      // decoder folders only (other models/ folders, e.g. classifiers, have their own fixtures)
      .filter((d) => JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')).model_type === 'llama' && JSON.parse(readFileSync(join(d, 'parity.json'), 'utf8')).full);

const i64 = (rows) => new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);

function emptyPast(cfg, batch) {
  const feeds = {};
  const hd = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    for (const t of ['key', 'value']) {
      feeds[`past_key_values.${i}.${t}`] = new ort.Tensor('float32', new Float32Array(0), [batch, cfg.num_key_value_heads, 0, hd]);
    }
  }
  return feeds;
}
function presentToPast(out, cfg) {
  const feeds = {};
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    for (const t of ['key', 'value']) feeds[`past_key_values.${i}.${t}`] = out[`present.${i}.${t}`];
  }
  return feeds;
}
function row(logits, b, t, n) {
  const [, S, V] = logits.dims;
  const off = (b * S + t) * V;
  return logits.data.subarray(off, off + (n ?? V));
}
function maxDiff(a, ref) {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(a[i] - ref[i]));
  return m;
}
const argmax = (a) => a.reduce((bi, v, i, arr) => (v > arr[bi] ? i : bi), 0);

let failed = false;
for (const dir of dirs) {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const par = JSON.parse(readFileSync(join(dir, 'parity.json'), 'utf8'));
  const tok = new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')));
  const sess = await ort.InferenceSession.create(join(dir, 'model.onnx'), { intraOpNumThreads: 1 });
  const tol = par.tolerance ?? 1e-4;
  const res = {};
  // (a) full prompt, empty cache
  const ids = par.full.input_ids;
  const S = ids.length;
  const outA = await sess.run({ input_ids: i64([ids]), attention_mask: i64([ids.map(() => 1)]), position_ids: i64([par.full.position_ids]), ...emptyPast(cfg, 1) });
  let dA = maxDiff(row(outA.logits, 0, S - 1), par.full.last_logits);
  par.full.first64_per_position.forEach((ref, t) => { dA = Math.max(dA, maxDiff(row(outA.logits, 0, t, 64), ref)); });
  res.no_cache = dA;
  // (b) prefix, then cached single steps
  const k = par.cached.prefix_ids.length;
  let out = await sess.run({ input_ids: i64([ids.slice(0, k)]), attention_mask: i64([ids.slice(0, k).map(() => 1)]), position_ids: i64([[...Array(k).keys()]]), ...emptyPast(cfg, 1) });
  let dB = maxDiff(row(out.logits, 0, k - 1, 512), par.cached.prefix_last_logits);
  for (const st of par.cached.steps) {
    out = await sess.run({ input_ids: i64([st.input_ids]), attention_mask: i64([Array(st.past_length + 1).fill(1)]), position_ids: i64([st.position_ids]), ...presentToPast(out, cfg) });
    dB = Math.max(dB, maxDiff(row(out.logits, 0, 0, 512), st.logits_first512));
    if (st.logits) dB = Math.max(dB, maxDiff(row(out.logits, 0, 0), st.logits));
  }
  // cached last step must also equal the no-cache run at the same position (ORT vs ORT)
  res.with_cache = dB;
  res.cache_vs_nocache_ort = maxDiff(row(out.logits, 0, 0), row(outA.logits, 0, S - 1));
  // (c) left-padded batch
  const bp = par.batch_left_padded;
  const outC = await sess.run({ input_ids: i64(bp.input_ids), attention_mask: i64(bp.attention_mask), position_ids: i64(bp.position_ids), ...emptyPast(cfg, bp.input_ids.length) });
  const L = bp.input_ids[0].length;
  res.batch_left_pad = Math.max(...bp.last_logits_first512.map((ref, b) => maxDiff(row(outC.logits, b, L - 1, 512), ref)));
  // greedy decode with the cache in ORT, compared with torch's greedy ids
  const g = par.greedy;
  let cur = await sess.run({ input_ids: i64([g.prompt_ids]), attention_mask: i64([g.prompt_ids.map(() => 1)]), position_ids: i64([[...Array(g.prompt_ids.length).keys()]]), ...emptyPast(cfg, 1) });
  const gen = [];
  let next = argmax(row(cur.logits, 0, cur.logits.dims[1] - 1));
  while (true) {
    gen.push(next);
    if (next === 0 || next === 2 || gen.length >= g.new_ids.length) break;
    const t = g.prompt_ids.length + gen.length - 1;
    cur = await sess.run({ input_ids: i64([[next]]), attention_mask: i64([Array(t + 1).fill(1)]), position_ids: i64([[t]]), ...presentToPast(cur, cfg) });
    next = argmax(row(cur.logits, 0, 0));
  }
  res.greedy_same_ids = gen.length === g.new_ids.length && gen.every((v, i) => v === g.new_ids[i]);
  const ok = res.no_cache < tol && res.with_cache < tol && res.batch_left_pad < tol && res.cache_vs_nocache_ort < tol && res.greedy_same_ids;
  if (!ok) failed = true;
  const name = dir.split('/').filter(Boolean).pop();
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: max|ort-torch| no-cache ${res.no_cache.toExponential(2)}, cached ${res.with_cache.toExponential(2)}, left-padded batch ${res.batch_left_pad.toExponential(2)}; ort cached-vs-full ${res.cache_vs_nocache_ort.toExponential(2)}; greedy ids ${res.greedy_same_ids ? 'identical' : 'DIFFER'}`);
  console.log(`  inputs: ${sess.inputNames.join(', ')}`);
  console.log(`  outputs: ${sess.outputNames.join(', ')}`);
  console.log(`  greedy: ${JSON.stringify(tok.decode(gen, { skip_special_tokens: false }))}`);
}
if (failed) process.exit(1);
