#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { builtinPlugins } from '../plugins/registry.js';
import { ConfigError, envOverrides, loadConfig, readConfigFile, validateConfig } from '../proxy/loadConfig.js';
import { createServer } from '../proxy/server.js';
import { ModelError } from '../slm/folder.js';
import { UnknownModelError } from '../slm/registry.js';
import { addModelsCommands } from './models.js';

const port = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number 0-65535');
  return n;
};

const program = new Command('tandem').description('OpenAI-compatible proxy with local small-model plugins');

program
  .command('serve')
  .description('serve the OpenAI-compatible API')
  .option('--config <file>', 'YAML or JSON config file')
  .option('--port <n>', 'port (env PORT; default 8080)', port)
  .option('--host <host>', 'address to bind (env TANDEM_HOST; default 127.0.0.1)')
  .option('--upstream <url>', 'OpenAI-compatible base URL every model goes to (env TANDEM_UPSTREAM_URL)')
  .option('--upstream-key-env <name>', 'environment variable holding the upstream API key', 'TANDEM_UPSTREAM_API_KEY')
  .action(
    async (opts: { config?: string; port?: number; host?: string; upstream?: string; upstreamKeyEnv: string }) => {
      const plugins = builtinPlugins();
      const overrides = { ...envOverrides(process.env) };
      if (opts.port !== undefined) overrides.port = opts.port;
      if (opts.host !== undefined) overrides.host = opts.host;
      if (opts.upstream !== undefined) overrides.upstreamUrl = opts.upstream;
      overrides.upstreamKeyEnv = opts.upstreamKeyEnv;
      const loaded = loadConfig(opts.config, overrides, plugins);
      const server = await createServer(loaded, { plugins });
      const { url } = await server.listen();
      server.deps.logger.info(
        { url, routes: loaded.config.routes.map((r) => r.model), config: loaded.source },
        'tandem listening',
      );
      const stop = async () => {
        await server.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
  );

addModelsCommands(program);

const config = program.command('config').description('config files');
config
  .command('check <files...>')
  .description('validate config files and print every error with its field path')
  .action((files: string[]) => {
    let failed = false;
    for (const file of files) {
      try {
        validateConfig(readConfigFile(file), builtinPlugins(), file);
        console.log(`${file}: ok`);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        console.error(err.message);
        failed = true;
      }
    }
    if (failed) process.exit(1);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof ModelError || err instanceof UnknownModelError) {
    console.error(err.message);
    process.exit(1);
  }
  console.error(`tandem: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
