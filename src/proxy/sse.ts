import type { Response } from 'express';
import type { OpenAIErrorBody } from './errors.js';
import { toJson } from './rawJson.js';

/** Resolves when a response's socket buffer has room again, or the client has gone (so nobody waits forever). */
export function drained(res: Response): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Server-sent events in the framing the OpenAI SDK parses: `data: <json>\n\n`, ending with `data: [DONE]`.
 * Events produced in the same turn of the event loop (one network read upstream) leave in one write: a socket write
 * costs more than the event itself.
 */
export class SseWriter {
  private pending = '';
  private scheduled = false;
  private blocked: Promise<void> | undefined;
  /** Once started, errors are reported in the stream (error event, then [DONE]), not as an HTTP status. */
  started = false;

  constructor(private readonly res: Response) {}

  /** Headers go out with the first event rather than in a write of their own. */
  start(headers: Record<string, string>): void {
    const res = this.res;
    this.started = true;
    res.statusCode = 200;
    res.setHeader('content-type', 'text/event-stream; charset=utf-8');
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('connection', 'keep-alive');
    // Tell reverse proxies (nginx) not to buffer: chunks must reach the client as they are made.
    res.setHeader('x-accel-buffering', 'no');
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  }

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /**
   * Queues one event. Returns a promise only while the socket's buffer is full, so a slow client slows the upstream,
   * not our memory; otherwise nothing to await (no promise per event on the hot path).
   */
  send(data: object): Promise<void> | undefined {
    if (this.blocked) return this.blocked.then(() => this.send(data));
    if (this.closed) return undefined;
    this.pending += `data: ${toJson(data)}\n\n`;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
    return undefined;
  }

  private readonly flush = () => {
    this.scheduled = false;
    const text = this.pending;
    this.pending = '';
    if (!text || this.closed) return;
    if (!this.res.write(text)) {
      this.blocked = drained(this.res).then(() => {
        this.blocked = undefined;
      });
    }
  };

  async error(body: OpenAIErrorBody): Promise<void> {
    await this.send(body);
    this.done();
  }

  /** Ends the stream: whatever is queued, then `[DONE]`, in one write. */
  done(): void {
    if (this.closed) return;
    const text = `${this.pending}data: [DONE]\n\n`;
    this.pending = '';
    this.res.end(text);
  }
}
