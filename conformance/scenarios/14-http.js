// Devices on HTTPS (azure-iot-device-http): telemetry, one event and a
// batch, read back through the Event Hubs-compatible endpoint; cloud-to-
// device messages polled, abandoned, completed and rejected, with the
// feedback each gives; a wrong key refused.
'use strict';
const { Message } = require('azure-iot-common');
const { Http } = require('azure-iot-device-http');
const { EventHubConsumerClient } = require('@azure/event-hubs');
const { createDevice, openDevice, uniqueId, assert, expectError, eventHubString, endPositions, subscribe, fromDevice, settleOutcomes } = require('../lib');

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

// Node's HTTP transport keeps the full iothub-app- name of a property.
exports.cloudToDevice = () => settleOutcomes(Http, 'httpc2d', 'iothub-app-kind');

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
