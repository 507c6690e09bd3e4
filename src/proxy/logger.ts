import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Request logs never carry bodies or headers; the redact list is a second fence in case a field with a secret is
 * ever logged by mistake.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tandem' },
      redact: {
        paths: ['authorization', 'apiKey', 'api_key', '*.authorization', '*.apiKey', '*.api_key', 'headers'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
