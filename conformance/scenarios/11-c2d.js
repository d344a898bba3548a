// Cloud-to-device messages sent by the official service client over AMQP
// ($cbs put-token, then /messages/devicebound) reach the device over MQTT
// with their properties, the device's acknowledgement comes back on the
// feedback receiver, and a message to an unknown device is refused.
'use strict';
const { Message } = require('azure-iot-common');
const { createDevice, openDevice, serviceClient, uniqueId, eventually, assert, expectError } = require('../lib');

exports.sendOverAmqp = async () => {
  const { id, cs } = await createDevice('c2d');
  const device = await openDevice(cs);
  const service = serviceClient();
  try {
    const received = [];
    device.on('message', (msg) => {
      received.push(msg);
      device.complete(msg, () => {});
    });
    await service.open();
    const receiver = await new Promise((resolve, reject) => service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r))));
    const feedback = [];
    receiver.on('message', (batch) => {
      feedback.push(...JSON.parse(batch.getData().toString('utf-8')));
      receiver.complete(batch, () => {});
    });
    const msg = new Message(JSON.stringify({ command: 'blink', times: 3 }));
    msg.messageId = uniqueId('msg');
    msg.correlationId = 'corr-1';
    msg.ack = 'full';
    msg.properties.add('priority', 'high');
    await service.send(id, msg);
    const got = await eventually(async () => {
      assert(received.length === 1, `received ${received.length}`);
      return received[0];
    });
    assert(got.data.toString() === '{"command":"blink","times":3}', `body ${got.data}`);
    assert(got.messageId === msg.messageId && got.correlationId === 'corr-1', `ids ${got.messageId} ${got.correlationId}`);
    assert(got.properties.getValue('priority') === 'high', 'application property');
    const record = await eventually(async () => {
      const r = feedback.find((f) => f.originalMessageId === msg.messageId);
      assert(r, `feedback: ${JSON.stringify(feedback)}`);
      return r;
    });
    assert(record.statusCode === 'Success' && record.deviceId === id && record.deviceGenerationId, `feedback record ${JSON.stringify(record)}`);
    await expectError(service.send(uniqueId('ghost'), new Message('x')), (err) => assert(/DeviceNotFound|not-found/i.test(`${err.constructor.name} ${err.message}`), `unknown device: ${err.constructor.name} ${err.message}`));
  } finally {
    await service.close();
    await device.close();
  }
};

// The same over AMQP on a WebSocket (port 443, /$iothub/websocket), as
// service apps behind firewalls send.
exports.sendOverAmqpWs = async () => {
  const { Client, AmqpWs } = require('azure-iothub');
  const { id, cs } = await createDevice('c2dws');
  const device = await openDevice(cs);
  const service = Client.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING, AmqpWs);
  try {
    const received = [];
    device.on('message', (msg) => {
      received.push(msg.data.toString());
      device.complete(msg, () => {});
    });
    await service.open();
    await service.send(id, new Message('over websocket'));
    await eventually(async () => assert(received[0] === 'over websocket', `received ${JSON.stringify(received)}`));
  } finally {
    await service.close();
    await device.close();
  }
};
