import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { HttpError } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Proxy keys. Only digests are kept, and compared in constant time. A client sends its key as `Authorization: Bearer`
 * or, when a passthrough upstream needs the Authorization header for itself, as `x-tandem-api-key`.
 */
export function proxyAuth(keys: string[], sendError: (res: Response, err: HttpError) => void) {
  const digests = keys.map(digest);
  return (req: Request, res: Response, next: NextFunction) => {
    if (digests.length === 0) return next();
    const header = req.get('x-tandem-api-key') ?? req.get('authorization')?.replace(/^Bearer\s+/i, '');
    const given = header ? digest(header) : undefined;
    if (given && digests.some((d) => timingSafeEqual(d, given))) return next();
    sendError(
      res,
      new HttpError(
        401,
        header ? 'Incorrect API key provided.' : 'Missing API key: send Authorization: Bearer <key>.',
        {
          code: 'invalid_api_key',
        },
      ),
    );
  };
}

/** Proxy keys from config: literal strings or `{env: NAME}`. A named variable that is unset refuses to start. */
export function resolveKeys(keys: (string | { env: string })[], env: NodeJS.ProcessEnv): string[] {
  const out = keys.map((k) => {
    if (typeof k === 'string') return k;
    const v = env[k.env];
    if (!v) throw new Error(`auth.keys: environment variable ${k.env} is not set`);
    return v;
  });
  if (env.TANDEM_API_KEYS)
    out.push(
      ...env.TANDEM_API_KEYS.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
  return out;
}
