'use strict';
// The DBOS TypeScript SQS peer: one workflow per SQS message; the workflow calls one
// step (body length * 2).
//
// @dbos-inc/sqs-receive is not published on the npm registry (it exists only in the
// DBOS TypeScript repository), so this file carries a receiver that does what that
// package's receive loop does, step for step, on @dbos-inc/dbos-sdk's public API:
//   - GetQueueAttributes once, to validate the queue, before consuming;
//   - one loop per queue: ReceiveMessage with MaxNumberOfMessages 1 and
//     WaitTimeSeconds 5; DBOS.startWorkflow(workflow, { workflowID: message.MessageId })
//     (started directly, no workflow queue: the package's default); then DeleteMessage,
//     since the started workflow takes over retries; errors are logged and the loop goes on;
//   - on shutdown, the loop ends after its current receive.
// --max-messages raises MaxNumberOfMessages (1..10) for experiments; the default is
// the package's 1. See ../README.md.

// A signal before DBOS is up has nothing to clean up: exit 0 at once (replaced by
// exitOnSignal in common.js).
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

const { DBOS } = require('@dbos-inc/dbos-sdk');
const {
  SQSClient,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  DeleteMessageCommand,
} = require('@aws-sdk/client-sqs');
const { parseArgs, log, doubleLength, configure, exitOnSignal, ready } = require('./common.js');

const PEER = 'dbos-ts-sqs';

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    databaseUrl: undefined,
    queueUrl: undefined,
    maxMessages: '1',
    logLevel: 'warn',
  });
  const maxMessages = Number(args.maxMessages);
  if (!Number.isInteger(maxMessages) || maxMessages < 1 || maxMessages > 10) {
    throw new Error('--max-messages must be 1..10');
  }
  configure('exactly-bench-dbos-ts-sqs', args.databaseUrl, args.logLevel);

  async function benchMessage(message) {
    return await doubleLength(message.Body ? Buffer.byteLength(message.Body) : 0);
  }
  const workflow = DBOS.registerWorkflow(benchMessage, { name: 'bench_message' });

  const endpoint = process.env.AWS_ENDPOINT_URL_SQS || process.env.AWS_ENDPOINT_URL || undefined;
  const client = new SQSClient({
    region: process.env.AWS_REGION || 'us-east-1',
    endpoint,
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID || 'test',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY || 'test',
    },
  });

  let shuttingDown = false;
  let listener = Promise.resolve();
  const stopping = exitOnSignal(PEER, async () => {
    shuttingDown = true;
    await listener;
  });

  await DBOS.launch();
  await client.send(new GetQueueAttributesCommand({ QueueUrl: args.queueUrl, AttributeNames: ['All'] }));

  listener = (async () => {
    while (!shuttingDown) {
      try {
        const response = await client.send(
          new ReceiveMessageCommand({
            QueueUrl: args.queueUrl,
            MaxNumberOfMessages: maxMessages,
            WaitTimeSeconds: 5,
          }),
        );
        for (const message of response.Messages ?? []) {
          await DBOS.startWorkflow(workflow, { workflowID: message.MessageId })(message);
          await client.send(new DeleteMessageCommand({ QueueUrl: args.queueUrl, ReceiptHandle: message.ReceiptHandle }));
        }
      } catch (e) {
        log(PEER, `receive loop: ${e && e.message}`);
      }
    }
  })();

  if (!stopping()) ready();
}

main().catch((e) => {
  log(PEER, `failed: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
