// Checks that @huggingface/tokenizers (JS) encodes/decodes exactly like recipes/tokenizer.py.
// Usage: node recipes/check_tokenizer.mjs [tokenizerDir] [samples.json]
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

const here = dirname(fileURLToPath(import.meta.url));
const build = process.env.TANDEM_BUILD ?? join(here, 'build');
const dir = process.argv[2] ?? join(build, 'tokenizer');
const samplesPath = process.argv[3] ?? join(build, 'tokenizer', 'samples.json');
const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
const tc = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
const tok = new Tokenizer(tj, tc);
const samples = JSON.parse(readFileSync(samplesPath, 'utf8'));
let encFail = 0;
let decFail = 0;
for (const { text, ids } of samples) {
  const got = tok.encode(text, { add_special_tokens: false }).ids;
  if (got.length !== ids.length || got.some((v, i) => v !== ids[i])) {
    encFail++;
    if (encFail <= 5) console.error('ENCODE MISMATCH', JSON.stringify(text).slice(0, 120), ids.slice(0, 20), got.slice(0, 20));
  }
  if (ids.length > 0) {
    const dec = tok.decode(ids, { skip_special_tokens: false });
    if (dec !== text) {
      decFail++;
      if (decFail <= 5) console.error('DECODE MISMATCH', JSON.stringify(text).slice(0, 120), JSON.stringify(dec).slice(0, 120));
    }
  }
}
// chat template renders with @huggingface/jinja
const tmpl = new Template(tc.chat_template);
const rendered = tmpl.render({
  messages: [
    { role: 'system', content: 'You are helpful.' },
    { role: 'user', content: 'What does apple mean?' },
  ],
  add_generation_prompt: true,
});
const expected = '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat does apple mean?<|im_end|>\n<|im_start|>assistant\n';
const tmplOk = rendered === expected;
const chatIds = tok.encode(rendered, { add_special_tokens: false }).ids;
const specialOk = chatIds[0] === 1 && chatIds.filter((i) => i === 2).length === 2;
console.log(`tokenizer check: ${samples.length} samples, encode mismatches ${encFail}, decode mismatches ${decFail}, chat template ${tmplOk ? 'ok' : 'WRONG'}, special ids ${specialOk ? 'ok' : 'WRONG'}`);
if (encFail || decFail || !tmplOk || !specialOk) process.exit(1);
