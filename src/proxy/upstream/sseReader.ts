/**
 * The `data` payloads of a server-sent-event body, in order, as text. Events are split on blank lines (LF or CRLF);
 * multi-line data is joined with newlines; comments and other fields are skipped. UTF-8 split across network reads
 * is reassembled.
 */
export async function* sseData(body: AsyncIterable<Uint8Array>): AsyncIterable<string> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const bytes of body) {
    buf += decoder.decode(bytes, { stream: true });
    if (buf.includes('\r')) buf = buf.replace(/\r\n?/g, '\n');
    let end = buf.indexOf('\n\n');
    while (end >= 0) {
      const data = eventData(buf.slice(0, end));
      buf = buf.slice(end + 2);
      if (data !== undefined) yield data;
      end = buf.indexOf('\n\n');
    }
  }
  const data = eventData(buf + decoder.decode());
  if (data !== undefined) yield data;
}

function eventData(block: string): string | undefined {
  if (block.startsWith('data: ') && !block.includes('\n')) return block.slice(6);
  let data: string | undefined;
  for (const line of block.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const v = line.slice(line[5] === ' ' ? 6 : 5);
    data = data === undefined ? v : `${data}\n${v}`;
  }
  return data;
}
