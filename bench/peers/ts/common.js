'use strict';
// Shared by the DBOS TypeScript-SDK peers (plain CommonJS on Node >= 20, no build step):
// argument parsing, the one-step bench workflow, and shutdown on SIGTERM/SIGINT.

const { DBOS } = require('@dbos-inc/dbos-sdk');

function parseArgs(argv, spec) {
  const out = { ...spec };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    let key = a.slice(2);
    let value;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else {
      value = argv[++i];
    }
    const name = key.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(name in spec)) throw new Error(`unknown option --${key}`);
    if (value === undefined) throw new Error(`--${key} needs a value`);
    out[name] = value;
  }
  for (const [k, v] of Object.entries(out)) {
    if (v === undefined) throw new Error(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} is required`);
  }
  return out;
}

function log(peer, msg) {
  process.stderr.write(`${peer}: ${msg}\n`);
}

// The step: trivial work, the payload length times two (as in exactly's bench workflow).
const doubleLength = DBOS.registerStep(async (n) => n * 2, { name: 'double_length' });

function configure(name, databaseUrl, logLevel) {
  DBOS.setConfig({ name, systemDatabaseUrl: databaseUrl, logLevel: logLevel ?? 'warn' });
}

// Exit 0 on SIGTERM/SIGINT after DBOS.shutdown() (which calls the receivers' destroy()).
function exitOnSignal(peer, beforeShutdown) {
  let stopping = false;
  const stop = async (sig) => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      log(peer, 'shutdown took over 10 s; exiting');
      process.exit(0);
    }, 10000).unref();
    try {
      if (beforeShutdown) await beforeShutdown();
      await DBOS.shutdown();
    } catch (e) {
      log(peer, `shutdown after ${sig}: ${e && e.message}`);
    }
    process.exit(0);
  };
  process.removeAllListeners('SIGTERM');
  process.removeAllListeners('SIGINT');
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  return () => stopping;
}

function ready() {
  process.stdout.write('READY\n');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { parseArgs, log, doubleLength, configure, exitOnSignal, ready, sleep };
