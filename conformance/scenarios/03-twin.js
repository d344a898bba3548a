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
