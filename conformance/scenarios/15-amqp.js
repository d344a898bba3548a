// Devices on AMQP (azure-iot-device-amqp, Amqp and AmqpWs): telemetry read
// back through the Event Hubs-compatible endpoint; cloud-to-device
// messages completed, abandoned and rejected with their feedback; direct
// methods; twins with reported patches and desired pushes; modules; a
// wrong key refused.
'use strict';
const { Message } = require('azure-iot-common');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
const { Client: DeviceClient, ModuleClient } = require('azure-iot-device');
const { EventHubConsumerClient } = require('@azure/event-hubs');
const {
  createDevice, openDevice, registry, serviceClient, uniqueId, updateReported, eventually, assert, expectError,
  eventHubString, endPositions, subscribe, fromDevice, hostName, settleOutcomes, selfSignedDevice,
} = require('../lib');

for (const [name, transport] of [['Amqp', Amqp], ['AmqpWs', AmqpWs]]) {
  exports[`telemetry${name}`] = async () => {
    const consumer = new EventHubConsumerClient('$Default', eventHubString());
    const { id, cs } = await createDevice(`amqp${name.toLowerCase()}`);
    const device = await openDevice(cs, transport);
    let sub;
    try {
      sub = subscribe(consumer, await endPositions(consumer));
      const m = new Message(JSON.stringify({ t: 1 }));
      m.messageId = uniqueId('m');
      m.contentType = 'application/json';
      m.properties.add('alert', 'high');
      await device.sendEvent(m);
      const [ev] = await fromDevice(sub.events, id, 1);
      assert(ev.messageId === m.messageId && ev.properties.alert === 'high' && ev.body.t === 1, `event ${JSON.stringify(ev)}`);
    } finally {
      if (sub) await sub.close();
      await consumer.close();
      await device.close();
    }
  };
}

exports.cloudToDevice = () => settleOutcomes(Amqp, 'amqpc2d', 'kind');

exports.methodsAndTwin = async () => {
  const { id, cs } = await createDevice('amqpmt');
  const device = await openDevice(cs, Amqp);
  try {
    device.onDeviceMethod('reboot', (req, res) => res.send(200, { echo: req.payload }, () => {}));
    const twin = await device.getTwin();
    const desired = [];
    twin.on('properties.desired', (d) => desired.push(d));
    await updateReported(twin, { rebootTime: 'now' });
    const { responseBody: service } = await registry().getTwin(id);
    assert(service.properties.reported.rebootTime === 'now', `reported ${JSON.stringify(service.properties.reported)}`);
    await registry().updateTwin(id, { properties: { desired: { interval: 7 } } }, '*');
    await eventually(async () => assert(desired.some((d) => d.interval === 7), `desired ${JSON.stringify(desired)}`));
    const { result } = await serviceClient().invokeDeviceMethod(id, { methodName: 'reboot', payload: { n: 1 }, responseTimeoutInSeconds: 10 });
    assert(result.status === 200 && result.payload.echo.n === 1, `method ${JSON.stringify(result)}`);
  } finally {
    await device.close();
  }
};

exports.moduleClient = async () => {
  const { id } = await createDevice('amqpmod');
  const { responseBody: mod } = await registry().addModule({ deviceId: id, moduleId: 'm1' });
  const cs = `HostName=${hostName()};DeviceId=${id};ModuleId=m1;SharedAccessKey=${mod.authentication.symmetricKey.primaryKey}`;
  const client = ModuleClient.fromConnectionString(cs, Amqp);
  try {
    await client.open();
    client.onMethod('ping', (req, res) => res.send(200, 'pong', () => {}));
    const twin = await client.getTwin();
    await updateReported(twin, { ready: true });
    const { responseBody: mt } = await registry().getModuleTwin(id, 'm1');
    assert(mt.properties.reported.ready === true, `module twin ${JSON.stringify(mt.properties.reported)}`);
    const { result } = await serviceClient().invokeDeviceMethod(id, 'm1', { methodName: 'ping', payload: null, responseTimeoutInSeconds: 10 });
    assert(result.status === 200 && result.payload === 'pong', `module method ${JSON.stringify(result)}`);
    await client.sendEvent(new Message('from a module'));
  } finally {
    await client.close();
  }
};

exports.wrongKeyRefused = async () => {
  const { cs } = await createDevice('amqpbad');
  const bad = cs.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`);
  const device = DeviceClient.fromConnectionString(bad, Amqp);
  await expectError(device.open(), (err) => assert(/Unauthorized|401/i.test(`${err.constructor.name} ${err.message}`), `${err.constructor.name}: ${err.message}`));
};

// A self-signed X.509 device on AMQP: no $cbs, the certificate of the TLS
// handshake authenticates it.
exports.x509SelfSigned = async () => {
  const { id, cert, key } = await selfSignedDevice('amqpx509');
  const device = DeviceClient.fromConnectionString(`HostName=${hostName()};DeviceId=${id};x509=true`, Amqp);
  device.setOptions({ cert, key });
  try {
    await device.open();
    const twin = await device.getTwin();
    await updateReported(twin, { auth: 'x509' });
    const { responseBody: after } = await registry().getTwin(id);
    assert(after.properties.reported.auth === 'x509', JSON.stringify(after.properties.reported));
  } finally {
    await device.close();
  }
};

// The SDK puts a fresh token on $cbs before the old one expires; the
// links keep working.
exports.tokenRenewal = async () => {
  const { id, cs } = await createDevice('amqprenew');
  const device = await openDevice(cs, Amqp, { tokenRenewal: { tokenValidTimeInSeconds: 10, tokenRenewalMarginInSeconds: 8 } });
  try {
    await new Promise((resolve) => setTimeout(resolve, 3000)); // the renewal is due after 2 s
    device.onDeviceMethod('ping', (req, res) => res.send(200, 'pong', () => {}));
    const twin = await device.getTwin();
    await updateReported(twin, { renewed: true });
    const { result } = await serviceClient().invokeDeviceMethod(id, { methodName: 'ping', responseTimeoutInSeconds: 10 });
    assert(result.payload === 'pong', 'method after renewal');
    await device.sendEvent(new Message('after renewal'));
  } finally {
    await device.close();
  }
};

// One device moves from MQTT to AMQP to HTTPS; every message arrives, in
// order, with the same device id.
exports.movingBetweenTransports = async () => {
  const { Mqtt } = require('azure-iot-device-mqtt');
  const { Http } = require('azure-iot-device-http');
  const consumer = new EventHubConsumerClient('$Default', eventHubString());
  const { id, cs } = await createDevice('amqpmove');
  let sub;
  try {
    sub = subscribe(consumer, await endPositions(consumer));
    for (const [name, transport] of [['mqtt', Mqtt], ['amqp', Amqp], ['http', Http]]) {
      const device = await openDevice(cs, transport);
      await device.sendEvent(new Message(name));
      await device.close();
    }
    const got = await fromDevice(sub.events, id, 3);
    const bodies = got.map((e) => (Buffer.isBuffer(e.body) ? e.body.toString() : String(e.body)));
    assert(bodies.join() === 'mqtt,amqp,http', `bodies ${bodies}`);
  } finally {
    if (sub) await sub.close();
    await consumer.close();
  }
};
