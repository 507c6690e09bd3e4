import type { NextFunction, Request, Response } from 'express';
import { HttpError } from './errors.js';

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 * 1024 };

/** '4mb' -> bytes (the config schema admits only b, kb and mb). */
export function parseSize(s: string): number {
  const m = /^(\d+)(b|kb|mb)$/i.exec(s);
  if (!m) throw new Error(`not a size: ${s}`);
  return Number(m[1]) * (UNITS[(m[2] as string).toLowerCase()] as number);
}

/**
 * Reads a request body into memory up to `limit` bytes, then calls `done` with it; a larger body is a 413 (the rest
 * drained so the client sees the answer rather than a reset).
 */
function readBody(req: Request, limit: number, next: NextFunction, done: (body: Buffer) => void): void {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) {
    tooLarge(req, limit, next);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let failed = false;
  req.on('data', (c: Buffer) => {
    if (failed) return;
    size += c.length;
    if (size > limit) {
      failed = true;
      tooLarge(req, limit, next);
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (!failed) done(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
  });
  req.on('error', () => {
    failed = true;
  });
}

/**
 * Reads a JSON request body into req.body. Smaller than express.json (no charset or inflate machinery, which an
 * OpenAI-style API does not need): JSON is UTF-8, and a compressed body is refused with 415. Any content type is
 * read as JSON so curl's default form type does not turn a good body into a confusing error.
 */
export function jsonBody(limit: number) {
  return (req: Request, _res: Response, next: NextFunction) => {
    if (req.method !== 'POST') return next();
    const encoding = req.headers['content-encoding'];
    if (encoding && encoding !== 'identity') {
      return next(
        new HttpError(415, `Content-Encoding '${encoding}' is not supported; send plain JSON.`, {
          code: 'unsupported_encoding',
        }),
      );
    }
    readBody(req, limit, next, (raw) => {
      const text = raw.toString('utf8');
      try {
        req.body = text.length ? JSON.parse(text) : undefined;
      } catch (err) {
        return next(
          new HttpError(400, `We could not parse the JSON body of your request: ${(err as Error).message}`, {
            code: 'invalid_json',
          }),
        );
      }
      next();
    });
  };
}

/** Reads any request body, as bytes, into req.body (for endpoints relayed to the upstream unchanged). */
export function rawBody(limit: number) {
  return (req: Request, _res: Response, next: NextFunction) => {
    readBody(req, limit, next, (raw) => {
      req.body = raw;
      next();
    });
  };
}

function tooLarge(req: Request, limit: number, next: NextFunction): void {
  // Stop reading but let the connection drain, so the client sees the 413 rather than a reset.
  req.resume();
  next(new HttpError(413, `Request body too large (limit ${limit} bytes).`, { code: 'request_too_large' }));
}
