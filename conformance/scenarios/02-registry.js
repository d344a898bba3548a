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
