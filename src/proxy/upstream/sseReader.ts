/**
 * Splits a server-sent-event body into the `data` payloads of its events, as text. Events are separated by blank
 * lines (LF or CRLF); multi-line data is joined with newlines; comments and other fields are skipped; UTF-8 split
 * across network reads is reassembled. Synchronous per read, so a relay needs no extra async layer per event.
 */
export class SseParser {
  private readonly decoder = new TextDecoder();
  private buf = '';

  /** The complete events' data in `bytes` (and what was left over before). */
  push(bytes: Uint8Array): string[] {
    this.buf += this.decoder.decode(bytes, { stream: true });
    if (this.buf.includes('\r')) this.buf = this.buf.replace(/\r\n?/g, '\n');
    const out: string[] = [];
    let end = this.buf.indexOf('\n\n');
    while (end >= 0) {
      const data = eventData(this.buf.slice(0, end));
      this.buf = this.buf.slice(end + 2);
      if (data !== undefined) out.push(data);
      end = this.buf.indexOf('\n\n');
    }
    return out;
  }

  /** The last event, if the body ended without a blank line after it. */
  end(): string[] {
    const data = eventData(this.buf + this.decoder.decode());
    this.buf = '';
    return data === undefined ? [] : [data];
  }
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
