// A Node app talking to Tandem with the official openai SDK: only baseURL changes.
//   npm start                       (in another terminal; or: npx tandem serve --upstream http://127.0.0.1:8000/v1)
//   node examples/client.mjs
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.TANDEM_URL ?? 'http://127.0.0.1:8080/v1',
  // The key Tandem expects if auth.keys is set; otherwise any string.
  apiKey: process.env.TANDEM_API_KEY ?? 'unused',
});
const model = process.env.TANDEM_MODEL ?? 'tandem-chat';

const answer = await client.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'What does the word "harbour" mean?' }],
  max_tokens: 48,
  temperature: 0,
});
console.log('answer:', answer.choices[0]?.message.content);
// Plugin results ride along in a `tandem` field (absent with server.strictOpenAI).
console.log('checks:', JSON.stringify(answer.tandem?.checks ?? []));

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'Name a chemical element.' }],
  max_tokens: 48,
  stream: true,
  stream_options: { include_usage: true },
});
process.stdout.write('stream: ');
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
  if (chunk.usage) process.stdout.write(`\nusage: ${JSON.stringify(chunk.usage)}`);
}
process.stdout.write('\n');
