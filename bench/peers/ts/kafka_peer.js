'use strict';
// The DBOS TypeScript Kafka peer: @dbos-inc/kafkajs-receive starts one workflow per
// message; the workflow calls one step (payload length * 2). Prints READY once DBOS
// is launched and the consumer group holds partitions of the topic. See ../README.md.

// A signal before DBOS is up has nothing to clean up: exit 0 at once (replaced by
// exitOnSignal in common.js).
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

const { DBOS } = require('@dbos-inc/dbos-sdk');
const { KafkaReceiver } = require('@dbos-inc/kafkajs-receive');
const { Kafka, logLevel } = require('kafkajs');
const { parseArgs, log, doubleLength, configure, exitOnSignal, ready, sleep } = require('./common.js');

const PEER = 'dbos-ts-kafka';

async function waitUntilAssigned(kafka, group, timeoutMs, stopping) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !stopping()) {
      try {
        const { groups } = await admin.describeGroups([group]);
        const g = groups[0];
        if (g && g.state === 'Stable' && g.members.some((m) => m.memberAssignment && m.memberAssignment.length > 0)) {
          return true;
        }
      } catch (e) {
        // not known yet
      }
      await sleep(100);
    }
    return false;
  } finally {
    await admin.disconnect();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    databaseUrl: undefined,
    bootstrap: '127.0.0.1:9092',
    topic: undefined,
    group: 'exactly-bench-dbos-ts',
    batchSize: '250', // kafkajs-receive's default: messages durably enqueued per batch
    logLevel: 'warn',
  });
  configure('exactly-bench-dbos-ts-kafka', args.databaseUrl, args.logLevel);

  const kafkaConfig = { clientId: 'exactly-bench-dbos-ts', brokers: [args.bootstrap], logLevel: logLevel.WARN };
  const receiver = new KafkaReceiver(kafkaConfig);

  async function benchMessage(topic, partition, message) {
    return await doubleLength(message.value ? message.value.length : 0);
  }
  const workflow = DBOS.registerWorkflow(benchMessage, { name: 'bench_message' });
  receiver.registerConsumer(workflow, args.topic, {
    name: 'bench_message',
    config: { groupId: args.group },
    batchSize: Number(args.batchSize),
  });

  const stopping = exitOnSignal(PEER);
  await DBOS.launch();
  if (!(await waitUntilAssigned(new Kafka(kafkaConfig), args.group, 120000, stopping)) && !stopping()) {
    log(PEER, 'the consumer group has no partition after 120 s; printing READY anyway');
  }
  if (!stopping()) ready();
}

main().catch((e) => {
  log(PEER, `failed: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
