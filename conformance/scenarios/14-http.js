// Devices on HTTPS (azure-iot-device-http): telemetry, one event and a
// batch, read back through the Event Hubs-compatible endpoint; cloud-to-
// device messages polled, abandoned, completed and rejected, with the
// feedback each gives; a wrong key refused.
'use strict';
const { Message } = require('azure-iot-common');
const { Http } = require('azure-iot-device-http');
const { Client: DeviceClient } = require('azure-iot-device');
const { EventHubConsumerClient } = require('@azure/event-hubs');
const { createDevice, openDevice, serviceClient, uniqueId, eventually, assert, expectError, eventHubString, endPositions, subscribe, fromDevice } = require('../lib');

exports.telemetry = async () => {
  const consumer = new EventHubConsumerClient('$Default', eventHubString());
  const { id, cs } = await createDevice('http');
  const device = await openDevice(cs, Http);
  let sub;
  try {
    sub = subscribe(consumer, await endPositions(consumer));
    const one = new Message(JSON.stringify({ temperature: 20 }));
    one.messageId = uniqueId('m');
    one.properties.add('alert', 'high');
    await device.sendEvent(one);
    const batch = ['b1', 'b2'].map((b) => {
      const m = new Message(b);
      m.properties.add('part', b);
      return m;
    });
    await device.sendEventBatch(batch);
    const got = await fromDevice(sub.events, id, 3);
    assert(got[0].messageId === one.messageId && got[0].properties.alert === 'high' && got[0].body.temperature === 20,
      `the single event ${JSON.stringify(got[0])}`);
    const bodies = got.slice(1).map((e) => (Buffer.isBuffer(e.body) ? e.body.toString() : String(e.body)));
    assert(bodies.join() === 'b1,b2' && got[2].properties.part === 'b2', `the batch ${JSON.stringify(got.slice(1))}`);
  } finally {
    if (sub) await sub.close();
    await consumer.close();
    await device.close();
  }
};

exports.cloudToDevice = async () => {
  const { id, cs } = await createDevice('httpc2d');
  const service = serviceClient();
  const device = DeviceClient.fromConnectionString(cs, Http);
  const seen = [];
  try {
    await service.open();
    const receiver = await new Promise((resolve, reject) => service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r))));
    const feedback = [];
    receiver.on('message', (b) => {
      feedback.push(...JSON.parse(b.getData().toString('utf-8')));
      receiver.complete(b, () => {});
    });
    // The first delivery of "keep" is abandoned and comes back; "drop"
    // is rejected.
    device.on('message', (msg) => {
      seen.push(msg);
      const body = msg.data.toString();
      const settle = body === 'drop' ? device.reject(msg) : seen.filter((m) => m.data.toString() === 'keep').length === 1 ? device.abandon(msg) : device.complete(msg);
      settle.catch((err) => seen.push({ error: err }));
    });
    await device.open();
    for (const body of ['keep', 'drop']) {
      const m = new Message(body);
      m.messageId = uniqueId(body);
      m.ack = 'full';
      m.properties.add('kind', body);
      await service.send(id, m);
    }
    const records = await eventually(async () => {
      const errors = seen.filter((m) => m.error);
      assert(errors.length === 0, `settling failed: ${errors.map((e) => e.error)}`);
      assert(feedback.length >= 2, `feedback ${JSON.stringify(feedback)}`);
      return feedback;
    }, 20000);
    const status = Object.fromEntries(records.map((r) => [seen.find((m) => m.messageId === r.originalMessageId).data.toString(), r.statusCode]));
    assert(status.keep === 'Success' && status.drop === 'Rejected', `feedback by message ${JSON.stringify(status)}`);
    assert(seen.filter((m) => m.data && m.data.toString() === 'keep').length === 2, 'the abandoned message was delivered again');
    assert(seen[0].properties.getValue('iothub-app-kind') === 'keep' || seen[0].properties.getValue('iothub-app-kind') === 'drop',
      `application properties ${JSON.stringify(seen[0].properties)}`);
  } finally {
    await device.close();
    await service.close();
  }
};

exports.wrongKeyRefused = async () => {
  const { cs } = await createDevice('httpbad');
  const bad = cs.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`);
  const device = await openDevice(bad, Http);
  try {
    await expectError(device.sendEvent(new Message('x')), (err) => assert(/Unauthorized/i.test(`${err.constructor.name} ${err.message}`), `${err.constructor.name}: ${err.message}`));
  } finally {
    await device.close();
  }
};
