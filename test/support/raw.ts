/** Raw HTTP against Tandem, for what the SDK hides: exact SSE framing, headers, error bodies. */
export async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

/** The `data:` payloads of an SSE body, in order ('[DONE]' kept as a string). */
export function sseEvents(text: string): (Record<string, unknown> | '[DONE]')[] {
  return text
    .split('\n\n')
    .map((e) => e.trim())
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6))
    .map((d) => (d === '[DONE]' ? '[DONE]' : (JSON.parse(d) as Record<string, unknown>)));
}

export function expectErrorShape(body: Record<string, unknown>): void {
  const err = body.error as Record<string, unknown> | undefined;
  if (
    !err ||
    typeof err.message !== 'string' ||
    typeof err.type !== 'string' ||
    !('param' in err) ||
    !('code' in err)
  ) {
    throw new Error(`not an OpenAI error body: ${JSON.stringify(body)}`);
  }
}
