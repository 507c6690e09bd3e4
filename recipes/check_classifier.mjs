// Verifies models/tandem-source-classifier in onnxruntime-node against its PyTorch parity fixtures (parity.json):
//  - @huggingface/tokenizers gives the same ids as recipes/tokenizer.py for every fixture text;
//  - ORT logits match torch within parity.tolerance (1e-4) for each text alone and for a right-padded batch;
//  - padded rows match the unpadded run (mask handling);
//  - optionally re-scores the held-out snippets (recipes/build/classifier/heldout.jsonl) tokenized in Node.
// Usage (from the project root, so node_modules resolve): node recipes/check_classifier.mjs [modelDir] [heldout.jsonl]
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import ort from 'onnxruntime-node';

const here = dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2] ?? join(here, '..', 'models', 'tandem-source-classifier');
const heldoutPath = process.argv[3] ?? join(here, 'build', 'classifier', 'heldout.jsonl');
const read = (f) => JSON.parse(readFileSync(join(dir, f), 'utf8'));
const cfg = read('config.json');
const par = read('parity.json');
const tc = read('tokenizer_config.json');
const tok = new Tokenizer(read('tokenizer.json'), tc);
const padId = tok.token_to_id(typeof tc.pad_token === 'string' ? tc.pad_token : tc.pad_token.content) ?? cfg.pad_token_id;
const maxLen = tc.model_max_length ?? cfg.max_position_embeddings;
const tol = par.tolerance ?? 1e-4;
const sess = await ort.InferenceSession.create(join(dir, 'model.onnx'), { intraOpNumThreads: 1 });

const i64 = (rows) => new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const argmax = (a) => a.reduce((bi, v, i, arr) => (v > arr[bi] ? i : bi), 0);
const rowsOf = (t) => Array.from({ length: t.dims[0] }, (_, b) => Array.from(t.data.subarray(b * t.dims[1], (b + 1) * t.dims[1])));

function batch(idLists) {
  const T = Math.max(1, ...idLists.map((x) => x.length));
  const ids = idLists.map((x) => [...x, ...Array(T - x.length).fill(padId)]); // right padding
  const mask = idLists.map((x) => [...x.map(() => 1), ...Array(T - x.length).fill(0)]);
  return { ids, mask, types: ids.map((r) => r.map(() => 0)) };
}
async function run({ ids, mask, types }) {
  const out = await sess.run({ input_ids: i64(ids), attention_mask: i64(mask), token_type_ids: i64(types) });
  return out.logits;
}

let failed = false;
const check = (ok, msg) => {
  if (!ok) failed = true;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${msg}`);
};

// graph signature
const meta = (names, m) => names.map((n) => `${n} ${m?.[n]?.type ?? ''}[${m?.[n]?.shape?.join(', ') ?? '?'}]`).join(', ');
console.log(`inputs: ${meta(sess.inputNames, sess.inputMetadata && Object.fromEntries(sess.inputNames.map((n, i) => [n, sess.inputMetadata[i] ?? sess.inputMetadata[n]])))}`);
console.log(`outputs: ${meta(sess.outputNames, sess.outputMetadata && Object.fromEntries(sess.outputNames.map((n, i) => [n, sess.outputMetadata[i] ?? sess.outputMetadata[n]])))}`);
check(
  JSON.stringify(sess.inputNames) === JSON.stringify(['input_ids', 'attention_mask', 'token_type_ids']) &&
    JSON.stringify(sess.outputNames) === JSON.stringify(['logits']),
  'ONNX input/output names',
);

// tokenizer parity (default encode options, i.e. add_special_tokens true: the ByteLevel post-processor adds nothing)
let tokBad = 0;
for (const s of par.single) {
  const a = tok.encode(s.text).ids;
  const b = tok.encode(s.text, { add_special_tokens: false }).ids;
  if (JSON.stringify(a) !== JSON.stringify(s.input_ids) || JSON.stringify(b) !== JSON.stringify(s.input_ids)) tokBad++;
}
check(tokBad === 0, `tokenizer ids equal parity.json for ${par.single.length} texts`);

// singles
let worst = 0;
const singleRows = [];
for (const s of par.single) {
  const lg = await run({ ids: [s.input_ids], mask: [s.attention_mask], types: [s.token_type_ids] });
  const row = rowsOf(lg)[0];
  singleRows.push(row);
  worst = Math.max(worst, maxDiff(row, s.logits));
  if (cfg.id2label[argmax(row)] !== s.label) failed = true;
  console.log(`     ${cfg.id2label[argmax(row)].padEnd(8)} ${JSON.stringify(s.text).slice(0, 70)}`);
}
// right-padded batch, fed exactly as stored and as rebuilt from Node's tokenizer
const b = par.batch;
const lgB = rowsOf(await run({ ids: b.input_ids, mask: b.attention_mask, types: b.token_type_ids }));
lgB.forEach((r, i) => { worst = Math.max(worst, maxDiff(r, b.logits[i])); });
const rebuilt = batch(b.texts.map((t) => tok.encode(t).ids));
check(JSON.stringify(rebuilt.ids) === JSON.stringify(b.input_ids) && JSON.stringify(rebuilt.mask) === JSON.stringify(b.attention_mask),
  'Node-built right-padded batch equals parity.json batch');
check(worst <= tol, `ORT vs torch logits max abs diff ${worst.toExponential(2)} (tolerance ${tol})`);
const padVsSingle = Math.max(...lgB.map((r, i) => maxDiff(r, singleRows[i])));
check(padVsSingle <= tol, `ORT padded-batch rows vs single runs max abs diff ${padVsSingle.toExponential(2)}`);
for (const T of [1, 3, maxLen]) { // dynamic shapes: batch 3, several lengths incl. the maximum
  const ids = Array.from({ length: 3 }, (_, r) => Array.from({ length: T }, (_, i) => 4 + ((r * 131 + i * 17) % 4000)));
  const lg = await run(batch(ids));
  if (lg.dims[0] !== 3 || lg.dims[1] !== Object.keys(cfg.id2label).length || ![...lg.data].every(Number.isFinite)) failed = true;
}
check(!failed, 'dynamic batch/sequence shapes (3 x 1, 3 x 3, 3 x 128) and fixture labels');

// held-out re-score in Node (end-to-end: Node tokenizer -> right padding -> ORT -> argmax -> id2label)
if (existsSync(heldoutPath)) {
  const rows = readFileSync(heldoutPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  let idBad = 0;
  let correct = 0;
  const per = {};
  const t0 = performance.now();
  for (let s = 0; s < rows.length; s += 64) {
    const chunk = rows.slice(s, s + 64);
    const ids = chunk.map((r) => {
      const x = tok.encode(r.text).ids.slice(0, maxLen);
      if (JSON.stringify(x) !== JSON.stringify(r.input_ids)) idBad++;
      return x;
    });
    const preds = rowsOf(await run(batch(ids))).map(argmax);
    chunk.forEach((r, i) => {
      per[r.label] ??= [0, 0];
      per[r.label][1]++;
      if (cfg.id2label[preds[i]] === r.label) { correct++; per[r.label][0]++; }
    });
  }
  const ms = performance.now() - t0;
  check(idBad === 0, `held-out: Node tokenizer ids equal Python ids for ${rows.length} snippets (${idBad} mismatches)`);
  console.log(`     held-out accuracy in ORT: ${(100 * correct / rows.length).toFixed(2)}% (${rows.length} snippets, ${ms.toFixed(0)} ms, batch 64) ` +
    Object.entries(per).map(([k, [c, n]]) => `${k} ${(100 * c / n).toFixed(1)}%`).join(', '));
}
console.log(failed ? 'classifier check FAILED' : 'classifier check passed');
if (failed) process.exit(1);
