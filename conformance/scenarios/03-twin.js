// Twins: service get and update with etags, the 412 on a stale etag, and
// desired-property notifications reaching the device.
'use strict';
const { createDevice, openDevice, registry, updateReported, eventually, assert, expectError } = require('../lib');

exports.etags = async () => {
  const { id } = await createDevice('twin');
  const { responseBody: twin } = await registry().getTwin(id);
  assert(twin.deviceId === id && twin.properties.desired.$version === 1, 'fresh twin');
  const stale = twin.etag;
  const { result: updated } = await twin.update({ tags: { site: 'lab' }, properties: { desired: { telemetryInterval: 10 } } });
  assert(updated.tags.site === 'lab' && updated.properties.desired.telemetryInterval === 10, 'update applied');
  assert(updated.etag !== stale, 'etag changed');
  await expectError(registry().updateTwin(id, { tags: { site: 'other' } }, stale),
    (err) => assert(err.constructor.name === 'InvalidEtagError' && err.response.statusCode === 412, `stale etag: ${err.constructor.name}`));
};

exports.desiredNotification = async () => {
  const { id, cs } = await createDevice('desired');
  const device = await openDevice(cs);
  try {
    const twin = await device.getTwin();
    const seen = [];
    twin.on('properties.desired', (delta) => seen.push(delta));
    await registry().updateTwin(id, { properties: { desired: { telemetryInterval: 42 } } }, '*');
    const got = await eventually(async () => {
      const d = seen.find((x) => x.telemetryInterval === 42);
      assert(d, `desired updates seen: ${JSON.stringify(seen)}`);
      return d;
    });
    assert(got.$version === 2, `$version ${got.$version}`);
    await updateReported(twin, { telemetryInterval: 42 });
    const { responseBody: after } = await registry().getTwin(id);
    assert(after.properties.reported.telemetryInterval === 42, 'reported ack stored');
  } finally {
    await device.close();
  }
};

// userProps renders a twin section without $version and $metadata, its
// keys sorted at every level.
function userProps(section) {
  const canonical = (v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? `{${Object.keys(v).filter((k) => !k.startsWith('$')).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`
    : JSON.stringify(v));
  return canonical(section);
}

// "desired": null removes every desired property; the device's twin then
// holds $version alone.
exports.desiredNull = async () => {
  const { id, cs } = await createDevice('desnull');
  await registry().updateTwin(id, { properties: { desired: { a: 1, b: { c: 2 } } } }, '*');
  const { responseBody: cleared } = await registry().updateTwin(id, { properties: { desired: null } }, '*');
  assert(userProps(cleared.properties.desired) === '{}' && cleared.properties.desired.$version === 3, `desired ${JSON.stringify(cleared.properties.desired)}`);
  const device = await openDevice(cs);
  try {
    const twin = await device.getTwin();
    assert(userProps(twin.properties.desired) === '{}' && twin.properties.desired.$version === 3, `the device sees ${JSON.stringify(twin.properties.desired)}`);
  } finally {
    await device.close();
  }
};

// Desired properties updated while the device is offline: a new device
// client's twin equals the service's.
async function desiredWhileOffline(transport) {
  const { id, cs } = await createDevice('desoff');
  let device = await openDevice(cs, transport);
  await device.getTwin();
  await registry().updateTwin(id, { properties: { desired: { a: 1, nested: { x: 1, gone: { z: 1 } }, list: [1, 2] } } }, '*');
  await device.close();
  await registry().updateTwin(id, { properties: { desired: { a: null, b: 2, nested: { y: 2, gone: { z: null } }, list: [3] } } }, '*');
  await registry().updateTwin(id, { properties: { desired: { c: { d: 'e' }, nested: { x: null } } } }, '*');
  const { responseBody: service } = await registry().getTwin(id);
  device = await openDevice(cs, transport);
  try {
    const twin = await device.getTwin();
    const want = userProps(service.properties.desired);
    const got = userProps(twin.properties.desired);
    assert(got === want && twin.properties.desired.$version === service.properties.desired.$version,
      `the device sees ${JSON.stringify(twin.properties.desired)}, the service ${JSON.stringify(service.properties.desired)}`);
    // An app's listener is first handed the whole desired section.
    const first = await new Promise((resolve) => twin.on('properties.desired', resolve));
    assert(userProps(first) === want, `the listener got ${JSON.stringify(first)}`);
  } finally {
    await device.close();
  }
}

// Over MQTT and, since devices speak it, over AMQP.
exports.desiredWhileOffline = () => desiredWhileOffline(require('azure-iot-device-mqtt').Mqtt);
exports.desiredWhileOfflineAmqp = () => desiredWhileOffline(require('azure-iot-device-amqp').Amqp);
