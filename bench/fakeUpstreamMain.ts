/**
 * The test fake upstream in a process of its own, so that under load it has its own event loop and is not the
 * bottleneck of the process that drives the load. Prints one JSON line `{"url": ...}` on stdout once listening.
 */
import { startFakeUpstream } from '../test/support/fakeUpstream.js';

const up = await startFakeUpstream();
// The fake records every request for tests; a benchmark would grow that list by the hundred thousand.
setInterval(() => {
  up.received.length = 0;
}, 250).unref();
process.stdout.write(`${JSON.stringify({ url: up.url })}\n`);

const stop = () => {
  void up.close().finally(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
// Dies with its parent even if the parent was SIGKILLed (stdin is a pipe from the parent).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
