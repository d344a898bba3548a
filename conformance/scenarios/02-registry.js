// Registry create, get, update and delete, with their errors.
'use strict';
const { registry, uniqueId, assert, expectError } = require('../lib');

exports.crud = async () => {
  const reg = registry();
  const id = uniqueId('reg');
  const { responseBody: created } = await reg.create({ deviceId: id });
  assert(created.deviceId === id && created.status === 'enabled', 'created device');
  assert(created.authentication.symmetricKey.primaryKey.length === 44, 'generated primary key');
  await expectError(reg.create({ deviceId: id }), (err) => assert(err.constructor.name === 'DeviceAlreadyExistsError' && err.response.statusCode === 409, `duplicate: ${err.constructor.name}`));
  const { responseBody: got } = await reg.get(id);
  assert(got.etag === created.etag, 'get returns the same etag');
  got.status = 'disabled';
  const { responseBody: updated } = await reg.update(got);
  assert(updated.status === 'disabled' && updated.etag !== created.etag, 'update');
  const { responseBody: list } = await reg.list();
  assert(list.some((d) => d.deviceId === id), 'list includes the device');
  await reg.delete(id);
  await expectError(reg.get(id), (err) => assert(err.constructor.name === 'DeviceNotFoundError', `get deleted: ${err.constructor.name}`));
  await expectError(reg.delete(id), (err) => assert(err.constructor.name === 'DeviceNotFoundError', `delete deleted: ${err.constructor.name}`));
};

// Bulk registry operations: addDevices, updateDevices and removeDevices
// send POST /devices with importMode create, Update/UpdateIfMatchETag and
// Delete/DeleteIfMatchETag; a partly failed request is a 400 whose body
// lists the failed entries.
exports.bulk = async () => {
  const reg = registry();
  const ids = [uniqueId('bulk'), uniqueId('bulk'), uniqueId('bulk')];
  const { responseBody: added } = await reg.addDevices(ids.map((deviceId) => ({ deviceId })));
  assert(added.isSuccessful === true && added.errors.length === 0, `addDevices: ${JSON.stringify(added)}`);
  const { responseBody: first } = await reg.get(ids[0]);
  assert(first.authentication.symmetricKey.primaryKey.length === 44, 'bulk-created device has generated keys');

  await expectError(reg.addDevices([{ deviceId: ids[0] }, { deviceId: uniqueId('bulk') }]), (err) => {
    assert(err.response.statusCode === 400, `duplicate add status ${err.response.statusCode}`);
    const body = JSON.parse(err.responseBody);
    assert(body.isSuccessful === false && body.errors.length === 1 && body.errors[0].deviceId === ids[0] &&
      body.errors[0].errorCode === 'DeviceAlreadyExists', `duplicate add body: ${err.responseBody}`);
  });

  first.status = 'disabled';
  const { responseBody: updated } = await reg.updateDevices([first], false);
  assert(updated.isSuccessful === true, `updateDevices with the current etag: ${JSON.stringify(updated)}`);
  const { responseBody: after } = await reg.get(ids[0]);
  assert(after.status === 'disabled' && after.etag !== first.etag, 'bulk update applied');
  assert(after.authentication.symmetricKey.primaryKey === first.authentication.symmetricKey.primaryKey, 'keys kept');
  await expectError(reg.updateDevices([first], false), (err) => {
    const body = JSON.parse(err.responseBody);
    assert(body.errors[0].errorCode === 'PreconditionFailed', `stale etag: ${err.responseBody}`);
  });

  const { responseBody: removed } = await reg.removeDevices(ids.map((deviceId) => ({ deviceId })), true);
  assert(removed.isSuccessful === true, `removeDevices: ${JSON.stringify(removed)}`);
  await expectError(reg.get(ids[1]), (err) => assert(err.constructor.name === 'DeviceNotFoundError', `get removed: ${err.constructor.name}`));
};
