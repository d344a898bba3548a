// IoT Edge on the service side: an edge device gets its scope and its
// runtime modules; leaf devices and nested edge devices take a parent by
// its scope; the registry refuses a parent that is not an edge device.
'use strict';
const { registry, uniqueId, assert, expectError } = require('../lib');

const create = async (device) => (await registry().create(device)).responseBody;

exports.scopesAndHierarchy = async () => {
  const top = await create({ deviceId: uniqueId('edge'), capabilities: { iotEdge: true } });
  assert(top.deviceScope === `ms-azure-iot-edge://${top.deviceId}-${top.generationId}`, `edge scope ${top.deviceScope}`);
  const { responseBody: modules } = await registry().getModulesOnDevice(top.deviceId);
  const ids = modules.map((m) => m.moduleId).sort();
  assert(ids.join() === '$edgeAgent,$edgeHub' && modules.every((m) => m.managedBy === 'IotEdge'), `modules ${JSON.stringify(modules)}`);

  const leaf = await create({ deviceId: uniqueId('leaf'), deviceScope: top.deviceScope });
  assert(leaf.deviceScope === top.deviceScope && JSON.stringify(leaf.parentScopes) === JSON.stringify([top.deviceScope]), `leaf ${JSON.stringify(leaf)}`);
  const nested = await create({ deviceId: uniqueId('nested'), capabilities: { iotEdge: true }, parentScopes: [top.deviceScope] });
  assert(nested.deviceScope !== top.deviceScope && nested.parentScopes[0] === top.deviceScope, `nested ${JSON.stringify(nested)}`);
  const grandchild = await create({ deviceId: uniqueId('leaf'), deviceScope: nested.deviceScope });
  assert(grandchild.parentScopes[0] === nested.deviceScope, `grandchild ${JSON.stringify(grandchild)}`);

  const { responseBody: twin } = await registry().getTwin(leaf.deviceId);
  assert(twin.deviceScope === top.deviceScope && twin.parentScopes[0] === top.deviceScope, `leaf twin ${JSON.stringify(twin)}`);
  const q = registry().createQuery(`SELECT deviceId FROM devices WHERE deviceScope = '${top.deviceScope}' AND capabilities.iotEdge = false`);
  const { result } = await q.nextAsTwin();
  assert(result.length === 1 && result[0].deviceId === leaf.deviceId, `query ${JSON.stringify(result)}`);

  await expectError(create({ deviceId: uniqueId('bad'), deviceScope: `ms-azure-iot-edge://${leaf.deviceId}-${leaf.generationId}` }),
    (err) => assert(err.response && err.response.statusCode === 400, `a leaf as parent: ${err.message}`));
};
