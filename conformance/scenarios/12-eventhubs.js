// A back end reads device telemetry from the hub's built-in Event
// Hubs-compatible endpoint with the official Event Hubs client, as it
// would on Azure: with the connection string the portal shows under
// Built-in endpoints, or with the IoT Hub connection string and the hub's
// amqp:link:redirect as Microsoft's sample does; the endpoint is
// read-only.
'use strict';
const crypto = require('crypto');
const { Message } = require('azure-iot-common');
const { MqttWs } = require('azure-iot-device-mqtt');
const { EventHubConsumerClient, EventHubProducerClient } = require('@azure/event-hubs');
const { Connection, isAmqpError } = require('rhea-promise');
const { hostName, createDevice, openDevice, uniqueId, assert, expectError, serviceKey, keyName, eventHubString, endPositions, subscribe, fromDevice } = require('../lib');


// redirectedEventHubString finds the endpoint as Microsoft's
// iothubConnectionString sample does: SASL PLAIN to the hub's AMQP port
// with an IoT Hub token, a receiver on messages/events/$management, and
// the amqp:link:redirect the hub answers with.
async function redirectedEventHubString() {
  const host = hostName();
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const sr = encodeURIComponent(host);
  const sig = crypto.createHmac('sha256', Buffer.from(serviceKey(), 'base64')).update(`${sr}\n${expiry}`).digest('base64');
  const token = `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${expiry}&skn=${keyName()}`;
  const conn = new Connection({
    transport: 'tls', host, hostname: host, port: 5671, reconnect: false,
    username: `${keyName()}@sas.root.${host.split('.')[0]}`, password: token,
  });
  await conn.open();
  try {
    // The hub refuses the receiver with the redirect: the error comes as
    // the attach's rejection or, once it has opened, as the link's error;
    // the handlers are given with the options so neither can be missed.
    let settle;
    const ended = new Promise((resolve) => { settle = resolve; });
    const onEnd = (ctx) => settle(ctx.receiver && ctx.receiver.error);
    const err = await conn.createReceiver({ source: { address: `amqps://${host}/messages/events/$management` }, onMessage: () => {}, onError: onEnd, onClose: onEnd })
      .then(() => ended, (e) => e);
    assert(isAmqpError(err) && err.condition === 'amqp:link:redirect', `the receiver ended with ${err && err.name}: ${err && err.message} ${JSON.stringify(err)}`);
    const m = /:\d+\/(.*)\/\$management/i.exec(err.info.address);
    assert(m && err.info.hostname, `redirect info ${JSON.stringify(err.info)}`);
    return `Endpoint=sb://${err.info.hostname}/;SharedAccessKeyName=${keyName()};SharedAccessKey=${serviceKey()};EntityPath=${m[1]}`;
  } finally {
    await conn.close();
  }
}

exports.readTelemetry = async () => {
  const consumer = new EventHubConsumerClient('$Default', eventHubString());
  const { id, cs } = await createDevice('eh');
  const device = await openDevice(cs);
  let sub;
  try {
    const props = await consumer.getEventHubProperties();
    assert(props.partitionIds.length === 4 && props.name === hostName().split('.')[0], `properties ${JSON.stringify(props)}`);
    // Start after what each partition holds now.
    const startPosition = {};
    for (const p of props.partitionIds) {
      const info = await consumer.getPartitionProperties(p);
      assert(typeof info.beginningSequenceNumber === 'number' && typeof info.isEmpty === 'boolean', `partition ${JSON.stringify(info)}`);
      startPosition[p] = { sequenceNumber: info.lastEnqueuedSequenceNumber, isInclusive: false };
    }
    sub = subscribe(consumer, startPosition);
    const msg = new Message(JSON.stringify({ temperature: 21.5 }));
    msg.messageId = uniqueId('m');
    msg.contentType = 'application/json';
    msg.contentEncoding = 'utf-8';
    msg.properties.add('temperatureAlert', 'false');
    await device.sendEvent(msg);
    const [ev] = await fromDevice(sub.events, id, 1);
    assert(ev.body && ev.body.temperature === 21.5, `body ${JSON.stringify(ev.body)}`);
    assert(ev.messageId === msg.messageId && ev.contentType === 'application/json', `ids ${ev.messageId} ${ev.contentType}`);
    assert(ev.properties.temperatureAlert === 'false', `properties ${JSON.stringify(ev.properties)}`);
    assert(typeof ev.sequenceNumber === 'number' && ev.enqueuedTimeUtc instanceof Date, `position ${ev.sequenceNumber} ${ev.enqueuedTimeUtc}`);
    assert(ev.systemProperties['iothub-message-source'] === 'Telemetry', `source ${JSON.stringify(ev.systemProperties)}`);
  } finally {
    if (sub) await sub.close();
    await consumer.close();
    await device.close();
  }
};

// A device on MQTT over WebSocket, read from an enqueued time: what was
// sent before it is left out, what came after arrives in order.
exports.startByEnqueuedTimeOverMqttWs = async () => {
  const consumer = new EventHubConsumerClient('$Default', eventHubString());
  const { id, cs } = await createDevice('ehws');
  const device = await openDevice(cs, MqttWs);
  let sub;
  try {
    await device.sendEvent(new Message('before'));
    const from = new Date();
    while (Date.now() <= from.getTime()) await new Promise(setImmediate); // the next millisecond
    for (const body of ['after-1', 'after-2']) {
      const m = new Message(body);
      m.messageId = uniqueId(body);
      await device.sendEvent(m);
    }
    sub = subscribe(consumer, { enqueuedOn: from });
    const got = await fromDevice(sub.events, id, 2);
    const bodies = got.map((e) => Buffer.isBuffer(e.body) ? e.body.toString() : String(e.body));
    assert(bodies.join() === 'after-1,after-2', `bodies ${bodies}`);
    assert(got.every((e) => e.enqueuedTimeUtc > from), 'an event enqueued before the start');
  } finally {
    if (sub) await sub.close();
    await consumer.close();
    await device.close();
  }
};

// The IoT Hub connection string alone reaches the endpoint through the
// hub's redirect.
exports.iotHubConnectionString = async () => {
  const consumer = new EventHubConsumerClient('$Default', await redirectedEventHubString());
  const { id, cs } = await createDevice('ehredirect');
  const device = await openDevice(cs);
  let sub;
  try {
    sub = subscribe(consumer, await endPositions(consumer));
    await device.sendEvent(new Message(JSON.stringify({ n: 1 })));
    const [ev] = await fromDevice(sub.events, id, 1);
    assert(ev.body && ev.body.n === 1, `body ${JSON.stringify(ev.body)}`);
  } finally {
    if (sub) await sub.close();
    await consumer.close();
    await device.close();
  }
};

// UseDevelopmentEmulator=true: plain AMQP on 5672, no TLS. Only an
// emulator serves it.
exports.developmentEmulatorString = async () => {
  if (!/^(localhost|127\.0\.0\.1)$/.test(hostName())) return 'only an emulator serves UseDevelopmentEmulator=true';
  const consumer = new EventHubConsumerClient('$Default', `${eventHubString()};UseDevelopmentEmulator=true`);
  const { id, cs } = await createDevice('ehdev');
  const device = await openDevice(cs);
  let sub;
  try {
    await device.sendEvent(new Message('plain'));
    sub = subscribe(consumer, { offset: '-1' });
    const [ev] = await fromDevice(sub.events, id, 1);
    assert(String(ev.body) === 'plain', `body ${ev.body}`);
  } finally {
    if (sub) await sub.close();
    await consumer.close();
    await device.close();
  }
};

exports.readOnlyEndpoint = async () => {
  const producer = new EventHubProducerClient(eventHubString(), { retryOptions: { maxRetries: 0 } });
  try {
    await expectError(producer.sendBatch([{ body: 'x' }]), (err) => assert(/Send|unauthori/i.test(`${err.code} ${err.message}`), `${err.code} ${err.message}`));
  } finally {
    await producer.close();
  }
};
