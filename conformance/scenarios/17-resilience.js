// Resilience: the official SDKs' retry policies against faults and
// throttles provoked through the emulator's own API (/emulator/faults and
// /emulator/tier, which Azure does not have; against a hub without them
// these scenarios are skipped). A device client reconnects by itself after
// a forced disconnect and after an outage that refuses its connections; a
// direct method throttled on an emulated S1 hub succeeds after the service
// client's retry.
'use strict';
const https = require('https');
const { SharedAccessSignature } = require('azure-iot-common');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Amqp } = require('azure-iot-device-amqp');
const { createDevice, openDevice, registry, serviceClient, eventually, assert } = require('../lib');

const serviceString = () => process.env.IOTHUB_CONNECTION_STRING;
const part = (name) => new RegExp(`${name}=([^;]+)`).exec(serviceString())[1];

// emulator calls the emulator-only API with a service token.
function emulator(method, path, body) {
  const host = part('HostName');
  const token = SharedAccessSignature.create(host, part('SharedAccessKeyName'), part('SharedAccessKey'), Math.floor(Date.now() / 1000) + 3600).toString();
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request({ host, method, path: `${path}?api-version=2021-04-12`, headers: { Authorization: token, 'Content-Type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

async function hasFaultApi() {
  const res = await emulator('GET', '/emulator/faults');
  return res.status === 200;
}

const noApi = 'the hub has no /emulator/faults API (it is not the emulator)';

// watchDesired follows a device's desired properties, which subscribes
// the twin to their changes.
async function watchDesired(device) {
  const twin = await device.getTwin();
  const seen = [];
  twin.on('properties.desired', (d) => seen.push(d.marker));
  return seen;
}

// reaches checks that desired changes reach the device again, which needs
// a live connection with its subscriptions restored. A change made while
// the device is offline is not pushed to it later (the SDKs read the twin
// on reconnecting instead), so each try makes a new one.
async function reaches(id, seen, prefix) {
  let n = 0;
  await eventually(async () => {
    const value = `${prefix}-${n++}`;
    await registry().updateTwin(id, { properties: { desired: { marker: value } } }, '*');
    await eventually(async () => assert(seen.includes(value), `desired markers seen: ${JSON.stringify(seen)}`), 1000);
  }, 60000);
}

for (const [name, transport] of [['Mqtt', Mqtt], ['Amqp', Amqp]]) {
  exports[`reconnectAfterForcedDisconnect${name}`] = async () => {
    if (!(await hasFaultApi())) return noApi;
    const { id, cs } = await createDevice(`forced${name.toLowerCase()}`);
    const device = await openDevice(cs, transport);
    try {
      const seen = await watchDesired(device);
      const res = await emulator('POST', '/emulator/faults', { kind: 'disconnect', deviceId: id });
      assert(res.status === 201 && res.body.hits === 1, `fault ${JSON.stringify(res)}`);
      await reaches(id, seen, 'after-disconnect');
      await device.sendEvent(new (require('azure-iot-common').Message)('back'));
    } finally {
      await device.close();
    }
  };
}

exports.reconnectAfterOutage = async () => {
  if (!(await hasFaultApi())) return noApi;
  const { id, cs } = await createDevice('outage');
  const device = await openDevice(cs, Mqtt);
  try {
    const seen = await watchDesired(device);
    const outage = await emulator('POST', '/emulator/faults', { kind: 'refuseConnects', deviceId: id, duration: '3s' });
    assert(outage.status === 201, `outage ${JSON.stringify(outage)}`);
    await emulator('POST', '/emulator/faults', { kind: 'disconnect', deviceId: id });
    await reaches(id, seen, 'after-outage');
    const { body: faults } = await emulator('GET', '/emulator/faults');
    const f = faults.find((x) => x.id === outage.body.id);
    assert(f && f.hits >= 1, `the outage refused no connection: ${JSON.stringify(f)}`);
  } finally {
    await device.close();
  }
};

exports.throttledMethodRetried = async () => {
  if (!(await hasFaultApi())) return noApi;
  const { id, cs } = await createDevice('throttled');
  const device = await openDevice(cs, Mqtt);
  device.onDeviceMethod('ping', (req, res) => res.send(200, 'pong', () => {}));
  const service = serviceClient();
  try {
    // S1 allows 160 KB of method payload a second, in 4 KB meters: 40
    // small calls at once, with a one-second window.
    const set = await emulator('PUT', '/emulator/tier', { tier: 'S1', units: 1, window: '1s' });
    assert(set.status === 200 && set.body.tier === 'S1', `tier ${JSON.stringify(set)}`);
    const calls = Array.from({ length: 60 }, () => service.invokeDeviceMethod(id, { methodName: 'ping', payload: null, responseTimeoutInSeconds: 30 }));
    const results = await Promise.all(calls);
    assert(results.every((r) => r.result.status === 200 && r.result.payload === 'pong'), 'a call did not succeed');
    const { body: tier } = await emulator('GET', '/emulator/tier');
    assert(tier.throttled && tier.throttled.method >= 1, `no call was throttled: ${JSON.stringify(tier)}`);
  } finally {
    await emulator('PUT', '/emulator/tier', { tier: '' });
    await device.close();
  }
};
